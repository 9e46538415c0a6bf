"""Secrets redaction, in one place.

Every string that leaves the console for a log line, an event, the state store, an
artifact or an error message goes through `redact`. Two layers:

1. exact values: every secret the settings hold (and the AWS credentials in the
   environment) is registered with `register_secret` when settings load, so its value
   is replaced wherever it appears, even when it has no recognisable shape;
2. shapes: CoinGecko keys (``CG-...``), Telegram bot tokens (``123456789:AA...``), AWS
   access key ids and secret keys, so a secret we were never told about is still masked.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from typing import Any

MASK = "***"

_PATTERNS: tuple[re.Pattern[str], ...] = (
    # CoinGecko demo and pro keys.
    re.compile(r"\bCG-[A-Za-z0-9_-]{8,}"),
    # Telegram bot tokens: bot id, colon, 35-character secret.
    re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}"),
    # AWS access key ids.
    re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b"),
    # AWS secret access keys: 40 characters of base64 alphabet with both cases and a digit.
    # (Hex digests are one case only, so sha1 and sha256 strings are left alone.)
    re.compile(
        r"(?<![A-Za-z0-9/+])(?=[A-Za-z0-9/+]*[a-z])(?=[A-Za-z0-9/+]*[A-Z])(?=[A-Za-z0-9/+]*\d)[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
    ),
)

# Environment variables whose values are secrets even if settings never load them.
SECRET_ENV_NAMES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "COINGECKO_API_KEY",
    "TELEGRAM_BOT_TOKEN",
    "RC_COINGECKO_API_KEY",
    "RC_TELEGRAM_BOT_TOKEN",
    "FRED_API_KEY",
    "RC_FRED_API_KEY",
)

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask this exact value from now on. Short values are ignored (they would mask words)."""
    if value and len(value) >= 6:
        with _lock:
            _secrets.add(value)


def register_environment_secrets(environ: dict[str, str] | None = None) -> None:
    """Register the values of the well-known secret environment variables."""
    env = os.environ if environ is None else environ
    for name in SECRET_ENV_NAMES:
        register_secret(env.get(name))


def redact(text: str) -> str:
    """``text`` with every known secret and every secret-shaped token replaced by ``***``."""
    if not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(MASK, text)
    return text


def redact_data(data: Any) -> Any:
    """A JSON-like structure with every string in it redacted."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {redact(str(k)): redact_data(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact_data(v) for v in data]
    return data


def redact_json(data: Any) -> str:
    """Serialise to JSON, then redact (catches secrets inside nested reprs too)."""
    return redact(json.dumps(data, default=str, sort_keys=True))


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message (and drops the args it used)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not take logging down
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            # Format the traceback now so the handler prints our redacted copy.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
