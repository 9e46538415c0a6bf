"""No secret reaches a log line, an event, the state store or an error message."""

from __future__ import annotations

import logging
import secrets
import string
from pathlib import Path

import pytest

from console.redact import RedactingFilter, redact, register_secret
from console.state import StateStore
from tests.console.cli import console


def coingecko_key() -> str:
    return "CG-" + secrets.token_urlsafe(18)


def telegram_token() -> str:
    return f"{secrets.randbelow(9 * 10**8) + 10**8}:AA" + secrets.token_urlsafe(25)


def aws_secret_key() -> str:
    alphabet = string.ascii_letters + string.digits + "/+"
    while True:
        key = "".join(secrets.choice(alphabet) for _ in range(40))
        if any(c.islower() for c in key) and any(c.isupper() for c in key) and any(c.isdigit() for c in key):
            return key


@pytest.mark.parametrize("make", [coingecko_key, telegram_token, aws_secret_key])
def test_secret_shapes_are_masked_without_being_registered(make) -> None:
    secret = make()
    assert secret not in redact(f"calling api with key={secret} now")


def test_registered_secret_of_any_shape_is_masked() -> None:
    secret = secrets.token_hex(5) + "plain"
    register_secret(secret)
    assert redact(f"token {secret}!") == "token ***!"


def test_hashes_and_ordinary_words_survive_redaction() -> None:
    digest = "sha256:" + "ab12" * 16
    text = f"model BTC-USD hash {digest} commit {'c0ffee' * 6 + 'abcd'}"
    assert redact(text) == text


def test_logging_filter_masks_formatted_args_and_tracebacks(tmp_path: Path) -> None:
    secret = coingecko_key()
    path = tmp_path / "log.txt"
    logger = logging.getLogger("test.redaction")
    handler = logging.FileHandler(path)
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        logger.warning("fetch failed for key %s", secret)
        try:
            raise RuntimeError(f"bad key {secret}")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = path.read_text()
    assert secret not in text and "***" in text and "RuntimeError" in text


def test_state_store_never_stores_a_secret(tmp_path: Path) -> None:
    secret = telegram_token()
    store = StateStore.open(tmp_path)
    store.create_run("r1", checklist="c", checklist_path="c", profile="sandbox", params={"note": secret},
                     steps=[("a", "wait", f"plan with {secret}")])
    store.add_event("r1", "a", "info", f"token is {secret}", {"nested": [secret]})
    store.update_step("r1", "a", "failed", message=f"failed {secret}", summary=secret, details={"k": secret})
    raw = (tmp_path / "state.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("state.db-*"))
    assert secret.encode() not in raw
    assert secret not in repr(store.snapshot())


def test_error_messages_mask_secrets_from_the_environment(tmp_path: Path) -> None:
    secret = secrets.token_urlsafe(24)
    # A config file whose bad value is the secret itself: the error must not echo it.
    cfg = tmp_path / "console.toml"
    cfg.write_text(f'max_runtime_hours = "{secret}"\n')
    proc = console("config", "show", "--config", str(cfg), env={"AWS_SECRET_ACCESS_KEY": secret})
    assert proc.returncode == 2
    assert secret not in proc.stderr + proc.stdout
