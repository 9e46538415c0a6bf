"""Secrets inside URLs: ``user:password@``, tokens in paths (Apprise's ``tgram://TOKEN/CHAT``,
``discord://ID/TOKEN``) and in queries (``?token=...``), masked wherever settings are shown.

`mask_urls` rewrites every URL in a text; `url_secrets` lists the secret parts of one URL so
they can be registered with the redactor (`console.redact.register_secret`) and never reach a
log either.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from console.redact import MASK

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>,\]\[]+")
_SECRET_QUERY = re.compile(r"(?i)(token|key|secret|pass|pwd|auth|sig|signature|credential)")
_TOKEN_LIKE = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_:+=.~-]{16,}$")
"""A path segment long and mixed enough to be a token (an id or a word is left alone)."""


def url_secrets(url: str) -> list[str]:
    """The parts of ``url`` that are secrets: the password, token-like path segments, secret query values."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    found = [password] if password else []
    if parts.username and not password and "@" in parts.netloc and _TOKEN_LIKE.match(parts.username):
        found.append(parts.username)  # a token given as the user part (``scheme://TOKEN@host``)
    found += [seg for seg in parts.path.split("/") if _TOKEN_LIKE.match(seg)]
    host, _, after = parts.netloc.rpartition("@")[2].partition(":")
    if after and not after.isdigit():
        found.append(after)  # Apprise puts a bot token where host:port goes (``tgram://ID:TOKEN/``)
    elif _TOKEN_LIKE.match(host):
        found.append(host)
    for key, value in parse_qsl(parts.query, keep_blank_values=False):
        if value and (_SECRET_QUERY.search(key) or _TOKEN_LIKE.match(value)):
            found.append(value)
    return [s for s in found if s]


def mask_url(url: str) -> str:
    """``url`` with each secret part replaced by ``***``."""
    masked = url
    for secret in sorted(set(url_secrets(url)), key=len, reverse=True):
        masked = masked.replace(secret, MASK)
    return masked


def mask_urls(text: str) -> str:
    """Every URL in ``text`` masked (`mask_url`)."""
    return _URL.sub(lambda m: mask_url(m.group(0)), text)
