"""Feature alignment, the dry run and the pre-live gate. Imports training and remote only.

A live runtime embeds the gate with one call before it trades::

    from runtime_checks import verify_gate, GateNotPassed

    try:
        record = verify_gate(models_dir)          # the key: $RC_GATE_KEY_FILE or <state dir>/gate.key
    except GateNotPassed as exc:                  # exit code 4, str(exc) is the one-line reason
        sys.exit(f"not trading: {exc}")
"""

from runtime_checks.errors import GateNotPassed
from runtime_checks.gate import verify_gate

__all__ = ["GateNotPassed", "verify_gate"]
