"""Secrets inside URLs (user:password, tokens in paths and queries) never shown by `config show`."""

from __future__ import annotations

import secrets
from pathlib import Path

from console.url_secrets import mask_urls
from tests.console.cli import console


def test_config_show_masks_passwords_and_tokens_inside_notify_urls(tmp_path: Path) -> None:
    password, token, query = secrets.token_hex(8), "T" + secrets.token_hex(12), secrets.token_hex(6)
    urls = [f"json://user:{password}@hooks.example/hook", f"discord://4174216298/{token}",
            f"https://hooks.example/x?token={query}"]
    config = tmp_path / "console.toml"
    config.write_text(f"notify_urls = {urls!r}\n".replace("'", '"'))
    for args in (["config", "show"], ["config", "show", "--json"]):
        proc = console("--config", str(config), *args)
        assert proc.returncode == 0, proc.stderr
        assert "hooks.example" in proc.stdout and "json://user:***@" in proc.stdout
        for secret in (password, token, query):
            assert secret not in proc.stdout + proc.stderr


def test_plain_urls_and_ports_are_left_alone() -> None:
    plain = "['https://example.com:8443/path/page', 'http://127.0.0.1:5000']"
    assert mask_urls(plain) == plain
    assert mask_urls("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/12345") == "tgram://123456789:***/12345"
