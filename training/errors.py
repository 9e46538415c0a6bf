"""The training package's exception tree and its exit codes.

`training` cannot import the console, so it follows the console's convention on its own:
``str(exc)`` is one line that says what was wrong and what to do, and ``exit_code`` is
the process exit status `python -m training.train` and the scheduler end with::

    TrainingError                exit 1   base; a job failed (worth a retry)
     +-- TrainingInputError      exit 2   bad input: retrying will not help
     |    +-- FeatureFileProblem          feature file missing, unreadable, no metadata
     |    +-- FeatureHashMismatch         feature file built from another spec
     |    +-- NotEnoughData               too few rows for window, horizon and split
     |    +-- NonFiniteValues             NaN or infinite values in features or close
     |    +-- CheckpointMismatch          checkpoint from another feature set or model
     |    +-- BadTrainingConfig           unknown mode, bad symbol, bad config file
     +-- LocalTrainingRefused    exit 3   the guard refused: not on a leased host
"""

from __future__ import annotations

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_GUARD = 3


class TrainingError(Exception):
    """Base of every error the training package reports; ``str()`` is one line."""

    exit_code = EXIT_FAILED


class TrainingInputError(TrainingError):
    """Bad input: a file, a flag or a value training cannot use; a retry will not help."""

    exit_code = EXIT_BAD_INPUT


class FeatureFileProblem(TrainingInputError):
    """The feature file is missing, unreadable, or lacks its metadata."""


class FeatureHashMismatch(TrainingInputError):
    """The feature file's hash differs from the one expected (or from its own spec)."""


class NotEnoughData(TrainingInputError):
    """Too few rows for the window, the label horizon and the purged split."""


class NonFiniteValues(TrainingInputError):
    """NaN or infinite values where training needs numbers."""


class CheckpointMismatch(TrainingInputError):
    """A checkpoint or model file belongs to another feature set or model shape."""


class BadTrainingConfig(TrainingInputError):
    """An unknown mode, an invalid symbol, or a malformed config file."""


class LocalTrainingRefused(TrainingError):
    """The guard refused to train here; the message starts "refusing to train locally:"."""

    exit_code = EXIT_GUARD

    def __init__(self, reason: str) -> None:
        super().__init__(f"refusing to train locally: {reason}")
        self.reason = reason


# --- market data and features (training/data, training/features) ---------------------


class MarketDataError(TrainingError):
    """An exchange or CoinGecko request failed after its retries (network, 5xx, 429s)."""


class BadMarketData(TrainingInputError):
    """Market data that cannot be used: a bad symbol, timeframe or range, a malformed CSV,
    a truncated parquet file, or an API answering garbage."""


class MissingApiKey(TrainingInputError):
    """A CoinGecko request needs an API key that is missing or was refused."""


class MissingFeatureInput(TrainingInputError):
    """Feature inputs (fundamentals, higher-timeframe candles) are missing or stale."""
