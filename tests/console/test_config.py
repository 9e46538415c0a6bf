"""Settings layering (defaults < file < env < flags), profiles, and `console config show`."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from tests.console.cli import assert_one_line_error, console


def show(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    proc = console("config", "show", "--json", *args, env={"RC_STATE_DIR": str(tmp_path / "state"), **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_each_layer_overrides_the_one_below(tmp_path: Path) -> None:
    cfg = tmp_path / "console.toml"
    cfg.write_text('aws_region = "eu-west-1"\nmax_runtime_hours = 3\n[watchdog]\ninterval_s = 7\nheartbeat_timeout_s = 8\n')
    rows = show(tmp_path, "--config", str(cfg), "--profile", "aws",
                env={"AWS_REGION": "ap-south-1", "RC_WATCHDOG__HEARTBEAT_TIMEOUT_S": "9"})
    assert rows["profile"] == {"value": "aws", "source": "flag"}
    assert rows["aws_region"] == {"value": "ap-south-1", "source": "env AWS_REGION"}
    assert rows["max_runtime_hours"]["value"] == "3.0" and rows["max_runtime_hours"]["source"].startswith("file")
    assert rows["watchdog.interval_s"]["source"].startswith("file")
    assert rows["watchdog.heartbeat_timeout_s"] == {"value": "9.0", "source": "env RC_WATCHDOG__HEARTBEAT_TIMEOUT_S"}
    assert rows["watchdog.idle_timeout_s"]["source"] == "default"


def test_runbook_environment_names_are_honoured(tmp_path: Path) -> None:
    rows = show(tmp_path, env={
        "SAGEMAKER_S3_BUCKET": "my-models", "SAGEMAKER_INSTANCE_TYPE": "ml.g5.xlarge",
        "SAGEMAKER_MAX_RUNTIME_HOURS": "2", "CLOUD_TRAINING_PROVIDER": "static", "TELEGRAM_CHAT_ID": "42",
        "SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/train",
    })
    assert rows["s3_bucket"]["value"] == "my-models"
    assert rows["sagemaker_instance_type"]["value"] == "ml.g5.xlarge"
    assert rows["max_runtime_hours"]["value"] == "2.0"
    assert rows["cloud_provider"]["value"] == "static"
    assert rows["telegram_chat_id"]["source"] == "env TELEGRAM_CHAT_ID"


def test_config_file_is_found_through_rc_config(tmp_path: Path) -> None:
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text('profile = "aws"\n')
    rows = show(tmp_path, env={"RC_CONFIG": str(cfg)})
    assert rows["profile"]["value"] == "aws"


def test_config_show_masks_every_secret(tmp_path: Path) -> None:
    cg = "CG-" + secrets.token_urlsafe(18)
    bot = f"{secrets.randbelow(10**9) + 10**8}:" + secrets.token_urlsafe(26)
    aws = secrets.token_urlsafe(30)[:40]
    proc = console("config", "show", env={"RC_STATE_DIR": str(tmp_path), "COINGECKO_API_KEY": cg,
                                          "TELEGRAM_BOT_TOKEN": bot, "AWS_SECRET_ACCESS_KEY": aws})
    assert proc.returncode == 0, proc.stderr
    for secret in (cg, bot, aws):
        assert secret not in proc.stdout + proc.stderr
    assert "***" in proc.stdout


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    cfg = tmp_path / "console.toml"
    cfg.write_text('profile = "aws"\nbroken = = 3\n')
    line = assert_one_line_error(console("config", "show", "--config", str(cfg)), 2, "line 2", "column")
    assert str(cfg) in line


def test_unknown_setting_and_bad_value_are_one_line_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "console.toml"
    cfg.write_text("wachdog_interval = 3\n")
    assert_one_line_error(console("config", "show", "--config", str(cfg)), 2, "unknown setting", "wachdog_interval")
    assert_one_line_error(console("config", "show", env={"RC_WATCHDOG__INTERVAL_S": "soon"}), 2,
                          "watchdog.interval_s", "RC_WATCHDOG__INTERVAL_S")


def test_unknown_profile_is_refused(tmp_path: Path) -> None:
    assert_one_line_error(console("config", "show", "--profile", "gcp"), 2, "unknown profile", "sandbox, aws")


def test_missing_named_config_file_is_refused(tmp_path: Path) -> None:
    assert_one_line_error(console("config", "show", "--config", str(tmp_path / "nope.toml")), 2, "does not exist")
