"""The gate record in S3 (moto over real HTTP): a pass lands there byte for byte, a failed
gate puts no pass there, and `console gate verify` reads the copy back when the record next
to the models is missing, judging it by the same local rules."""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

import boto3
import pytest

from tests.console.cli import assert_one_line_error, console

SYMBOL = "BTC-USD"


@pytest.fixture
def aws(tmp_path, moto_endpoint, monkeypatch):
    """An aws-profile environment whose S3 is the moto server, with credentials made now."""
    bucket = "rc-gates-" + secrets.token_hex(5)
    env = {"RC_PROFILE": "aws", "RC_AWS_ENDPOINT_URL": moto_endpoint, "RC_S3_BUCKET": bucket,
           "AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(), "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
           "RC_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path / "home")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    return env, client, bucket


@pytest.fixture
def models(tmp_path):
    from runtime_checks.small import write_model
    from training.features.spec import spec_for

    spec = spec_for(SYMBOL)
    write_model(tmp_path / "models", SYMBOL, spec.names, spec.hash)
    return tmp_path / "models"


EVIDENCE = {"samples": 2000, "bars": 2000, "accuracy": 0.53, "auc": 0.54, "auc_p_value": 0.001, "trades": 120,
            "decisions_in_market": 1900, "trade_hit_rate": 0.53, "trade_hit_p_value": 0.004, "net_return": 0.02,
            "net_interval": [0.004, 0.036], "net_p_value": 0.01, "round_trip_cost_bps": 26.0,
            "baselines": {"majority": {"accuracy": 0.5, "p_value": 0.003}, "last_move": {"accuracy": 0.51, "p_value": 0.02}}}  # fmt: skip


def _results(passing: bool):
    from runtime_checks.checks import ALIGNMENT, DRYRUN

    figures = {"trained": True, "samples": 2000, "hit_rate": 0.53 if passing else 0.49, "p_value": 0.004,
               "baseline_majority_hit_rate": 0.5, "baseline_last_move_hit_rate": 0.51, "mean_confidence": 0.56,
               "degenerate": False, "degenerate_reason": "", "after_cost_net_return": 0.02,
               "evidence": {**EVIDENCE, "trade_hit_rate": 0.53 if passing else 0.49}}  # fmt: skip
    return [ALIGNMENT.result(SYMBOL, True, f"{SYMBOL}: aligned"),
            DRYRUN.result(SYMBOL, passing, f"{SYMBOL}: hit rate {figures['hit_rate']:.0%}", figures)]


def _record_like_the_dryrun(models: Path, state: Path, passing: bool) -> tuple[dict, list]:
    """Record a gate exactly as `console dryrun` does: the console's sinks, then the state store."""
    from console import checking as glue
    from console.resources import Resources
    from console.settings import load_settings
    from console.state import StateStore
    from runtime_checks import gate
    from training.features.spec import spec_for

    resources = Resources(load_settings().settings)
    sinks = glue.gate_sinks(resources)
    record = gate.record_gate(models, _results(passing), symbols=[SYMBOL], key_file=resources.paths.gate_key,
                              feature_hashes={SYMBOL: spec_for(SYMBOL).hash}, sinks=sinks)  # fmt: skip
    store = StateStore.open(state)
    glue.store_gate(store, record)
    store.close()
    return record, sinks


def _gate_objects(client, bucket: str) -> dict[str, bytes]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix="gates/").get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def test_a_gate_pass_lands_in_s3_as_the_same_signed_record(aws, models, tmp_path):
    env, client, bucket = aws
    record, sinks = _record_like_the_dryrun(models, tmp_path / "state", passing=True)
    assert record["passed"] and sinks and sinks[0].error is None
    local = (models / "gate.json").read_bytes()
    objects = _gate_objects(client, bucket)
    assert set(objects) == {"gates/latest.json", sinks[0].where.split(f"s3://{bucket}/", 1)[1]}
    assert all(body == local for body in objects.values())  # byte for byte: the same record, signature and all
    for key in objects:
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["Metadata"]["sha256"] == hashlib.sha256(local).hexdigest()
    assert json.loads(objects["gates/latest.json"])["id"] == record["id"]


def test_a_failed_gate_writes_no_pass_to_s3(aws, models, tmp_path):
    env, client, bucket = aws
    record, _ = _record_like_the_dryrun(models, tmp_path / "state", passing=False)
    assert not record["passed"]
    objects = _gate_objects(client, bucket)
    assert objects, "the failed verdict is recorded too, so `gate status` can say why"
    assert not [k for k, body in objects.items() if json.loads(body)["passed"]]


def test_a_failed_gate_after_a_pass_replaces_the_latest_copy(aws, models, tmp_path):
    env, client, bucket = aws
    _record_like_the_dryrun(models, tmp_path / "state", passing=True)
    failed, _ = _record_like_the_dryrun(models, tmp_path / "state", passing=False)
    latest = json.loads(_gate_objects(client, bucket)["gates/latest.json"])
    assert latest["id"] == failed["id"] and latest["passed"] is False


@pytest.mark.slow
def test_gate_verify_reads_the_s3_copy_back_when_the_local_record_is_missing(aws, models, tmp_path):
    env, client, bucket = aws
    _record_like_the_dryrun(models, tmp_path / "state", passing=True)
    (models / "gate.json").unlink()
    proc = console("gate", "verify", "--models", str(models), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "valid pass for BTC-USD" in proc.stdout
    status = console("gate", "status", "--models", str(models), env=env)
    assert f"s3://{bucket}/gates/latest.json" in status.stdout and "verdict: valid pass" in status.stdout
    # The local rules still judge the copy: a changed model file is refused ...
    model = next((models / "models" / SYMBOL).iterdir()) / "model.pt"
    original = model.read_bytes()
    model.write_bytes(original[:-1] + b"x")
    assert_one_line_error(console("gate", "verify", "--models", str(models), env=env), 4, "changed since the gate passed")
    model.write_bytes(original)
    # ... and so is a copy edited in S3 (its object checksum made to match, its signature cannot be).
    copy = json.loads(client.get_object(Bucket=bucket, Key="gates/latest.json")["Body"].read())
    copy["expires_at"] += 30 * 86_400
    body = json.dumps(copy).encode()
    client.put_object(Bucket=bucket, Key="gates/latest.json", Body=body,
                      Metadata={"sha256": hashlib.sha256(body).hexdigest()})
    assert_one_line_error(console("gate", "verify", "--models", str(models), env=env), 4, "does not match its signature")


@pytest.mark.slow
def test_gate_verify_without_any_record_anywhere_is_exit_4(aws, models):
    env, _, _ = aws
    assert_one_line_error(console("gate", "verify", "--models", str(models), env=env), 4, "no gate record in")
