"""The runtime checks' exception tree and exit codes.

`runtime_checks` cannot import the console, so it follows the console's convention on its
own: ``str(exc)`` is one line saying what was wrong and what to do, ``exit_code`` is the
documented exit status::

    RuntimeCheckError            exit 1   base; a check could not run (network, ...)
     +-- CheckInputError         exit 2   bad input: models dir, checkpoint, candles, feature file
     |    +-- StaleCandles                the newest candle is too old to stand for "now"
     |    +-- CandleGap                   candles missing for longer than allowed
     +-- GateNotPassed           exit 4   no valid gate pass for exactly these files
          +-- TamperedGateRecord          the record's signature does not match its content
"""

from __future__ import annotations

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_GATE = 4


class RuntimeCheckError(Exception):
    """Base of every error the runtime checks report; ``str()`` is one line."""

    exit_code = EXIT_FAILED


class CheckInputError(RuntimeCheckError):
    """Input a check cannot use: a models dir, a checkpoint, a feature file or candles."""

    exit_code = EXIT_BAD_INPUT


class StaleCandles(CheckInputError):
    """The freshest candle is older than the check allows."""


class CandleGap(CheckInputError):
    """Candles are missing for a stretch longer than the check allows."""


class GateNotPassed(RuntimeCheckError):
    """There is no valid, unexpired gate pass for exactly these model files and feature spec."""

    exit_code = EXIT_GATE


class TamperedGateRecord(GateNotPassed):
    """A gate record whose signature does not match its content (edited, or foreign)."""
