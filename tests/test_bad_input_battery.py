"""The bad input battery: malformed input anywhere in the CLI is one line, the documented
exit code, and nothing changed.

Each case builds its own malformed input (a config, a checklist, a CSV, a torn parquet
file, a garbage checkpoint, a tampered gate record, missing credentials, a host key that
does not match its pin...) inside a fresh state directory that already holds a state store
and a small data directory, runs the real ``console`` executable once, and asserts:

- exactly one line on stderr, no traceback anywhere;
- the documented exit code (2 bad input, 3 guard refused, 4 gate failed);
- the state store's rows and the data directory's files (names, sizes, sha256) are
  exactly what they were before.

Cases are independent (xdist-friendly) and need no network: every command must refuse
before it would reach the sandbox, AWS or a host.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from console.state import StateStore
from tests.console.cli import assert_one_line_error, console

BAD_INPUT, GUARD_REFUSED, GATE_FAILED = 2, 3, 4


# -- the world each case runs in ---------------------------------------------------------------


@dataclass
class World:
    """A state dir with a store and a data dir, plus a scratch dir for the case's inputs."""

    root: Path
    state: Path
    data: Path
    scratch: Path
    env: dict[str, str] = field(default_factory=dict)

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.scratch / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path


GOOD_CANDLES = "open_time,open,high,low,close,volume\n" + "".join(
    f"{1_700_000_000 + 60 * i},{100 + i},{101 + i},{99 + i},{100.5 + i},{10 + i}\n" for i in range(5)
)


def _make_world(tmp_path: Path) -> World:
    state = tmp_path / "state"
    store = StateStore.open(state)
    store.add_event(None, None, "note", "before the battery")
    store.close()
    data = state / "data"
    # A small data directory the commands must leave alone, byte for byte.
    (data / "candles").mkdir(parents=True)
    (data / "candles" / "notes.txt").write_text("candles the operator already has\n")
    (data / "features").mkdir()
    (data / "features" / "README").write_text("feature files go here\n")
    scratch = tmp_path / "inputs"
    scratch.mkdir()
    return World(tmp_path, state, data, scratch)


def data_listing(data: Path) -> dict[str, tuple[int, str]]:
    """Every file under the data dir: relative path -> (size, sha256); directories as (-1, '')."""
    out: dict[str, tuple[int, str]] = {}
    for path in sorted(data.rglob("*")):
        rel = path.relative_to(data).as_posix()
        if path.is_dir():
            out[rel + "/"] = (-1, "")
        else:
            blob = path.read_bytes()
            out[rel] = (len(blob), hashlib.sha256(blob).hexdigest())
    return out


def store_snapshot(state: Path) -> dict:
    store = StateStore.open(state)
    try:
        return store.snapshot()
    finally:
        store.close()


# -- building blocks for the malformed inputs ----------------------------------------------------


def _checklist(w: World, text: str | bytes) -> list[str]:
    return ["run", "--checklist", str(w.write("checklist.toml", text))]


def _config(w: World, text: str | bytes) -> list[str]:
    return ["--config", str(w.write("console.toml", text)), "runs"]


def _import(w: World, csv: str | bytes, symbol: str = "ETH-USD", timeframe: str = "1m") -> list[str]:
    return ["data", "import", symbol, timeframe, str(w.write("candles.csv", csv))]


def _csv(rows: list[str], header: str = "open_time,open,high,low,close,volume") -> str:
    return header + "\n" + "".join(row + "\n" for row in rows)


def _feature_file(w: World, content: bytes, symbol: str = "ETH-USD") -> Path:
    out = w.scratch / "features"
    out.mkdir(exist_ok=True)
    (out / f"{symbol}.parquet").write_bytes(content)
    return out


def _real_parquet_bytes(w: World) -> bytes:
    """A valid parquet file with no feature-file metadata (a foreign file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = w.scratch / "foreign.parquet"
    pq.write_table(pa.table({"timestamp": [1, 2, 3], "x": [0.1, 0.2, 0.3]}), path)
    return path.read_bytes()


def _models_dir(w: World, checkpoint: object | bytes, symbol: str = "ETH-USD") -> Path:
    """DIR/models/SYMBOL/<version>/model.pt holding ``checkpoint`` (raw bytes, or torch.save'd)."""
    models = w.scratch / "models"
    folder = models / "models" / symbol / "20260101-000000"
    folder.mkdir(parents=True)
    if isinstance(checkpoint, bytes):
        (folder / "model.pt").write_bytes(checkpoint)
    else:
        import torch

        torch.save(checkpoint, folder / "model.pt")
    return models


def _checkpoint_without(*missing: str) -> dict:
    full = {"symbol": "ETH-USD", "state_dict": {}, "input_size": 54, "feature_names": [f"f{i}" for i in range(54)],
            "feature_hash": "0" * 64, "window": 60, "horizon": 1, "scaler": {}}
    return {k: v for k, v in full.items() if k not in missing}


def _gate_models(w: World, gate_text: str) -> list[str]:
    models = _models_dir(w, _checkpoint_without())
    (models / "gate.json").write_text(gate_text)
    return ["gate", "verify", "--models", str(models)]


def _fake_aws_key_id() -> str:
    return "AKIA" + secrets.token_hex(8).upper()


# -- host keys: a real SSH server whose key is not the pinned one -------------------------------


def _ed25519_openssh_private() -> tuple[str, str]:
    """(OpenSSH private key text, 'ssh-ed25519 BASE64') built now."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return private, public


class _SSHServer:
    """A paramiko SSH server on 127.0.0.1 that completes the key exchange and nothing else."""

    def __init__(self, key_file: Path) -> None:
        import paramiko

        self.host_key = paramiko.Ed25519Key.from_private_key_file(str(key_file))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._transports: list[paramiko.Transport] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import paramiko

        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.host_key)
            self._transports.append(transport)
            try:
                transport.start_server(server=paramiko.ServerInterface())
            except Exception:  # the client hung up on our key: exactly what we want
                pass

    def stop(self) -> None:
        self._stop = True
        self.sock.close()
        for t in self._transports:
            t.close()


@pytest.fixture()
def ssh_server(tmp_path: Path) -> Iterator[_SSHServer]:
    private, _ = _ed25519_openssh_private()
    key_file = tmp_path / "server_host_key"
    key_file.write_text(private)
    server = _SSHServer(key_file)
    yield server
    server.stop()


def _known_static_instance(w: World, server: _SSHServer | None, *, state: str = "running",
                           pin_other_key: bool = True) -> str:
    """Record a static instance in the store, pinned to a key the server does not have."""
    instance_id = "static-" + secrets.token_hex(3)
    private, _ = _ed25519_openssh_private()
    keys = w.state / "keys"
    keys.mkdir(exist_ok=True)
    client_key = keys / f"{instance_id}.pem"
    client_key.write_text(private)
    client_key.chmod(0o600)
    store = StateStore.open(w.state)
    store.upsert_instance(instance_id, run_id=None, provider="static", state=state,
                          data={"public_address": "127.0.0.1", "port": server.port if server else 22,
                                "ssh_user": "operator", "key_path": str(client_key)})
    store.close()
    if pin_other_key:
        _, other_public = _ed25519_openssh_private()
        known = w.state / "known_hosts"
        known.mkdir(exist_ok=True)
        (known / f"{instance_id}.known_hosts").write_text(f"{instance_id} {other_public.split(' ', 2)[0]} "
                                                          f"{other_public.split(' ', 2)[1]}\n")
    return instance_id


# -- the table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One malformed input: build(world) -> argv; the exit code and words the one line must hold."""

    build: Callable[[World], list[str]]
    code: int
    needles: tuple[str, ...] = ()
    env: Callable[[World], dict[str, str]] | None = None
    ssh: bool = False
    xfail: str | None = None


def _c(build: Callable[[World], list[str]], code: int = BAD_INPUT, *needles: str, **kw: object) -> Case:
    return Case(build, code, needles, **kw)  # type: ignore[arg-type]


ONE_SYMBOL = '[params]\nsymbols = ["ETH-USD"]\n'

CASES: dict[str, Case] = {
    # configs
    "config-toml-syntax": _c(lambda w: _config(w, 'profile = = "sandbox"\n'), 2, "TOML syntax error"),
    "config-unknown-key": _c(lambda w: _config(w, "frobnicate = 1\n"), 2, "unknown setting", "frobnicate"),
    "config-unknown-nested-key": _c(lambda w: _config(w, "[watchdog]\nintervall_s = 5\n"), 2, "intervall_s"),
    "config-wrong-type": _c(lambda w: _config(w, '[budget]\nrun_usd = "lots"\n'), 2, "budget.run_usd"),
    "config-bad-profile": _c(lambda w: _config(w, 'profile = "azure"\n'), 2, "unknown profile"),
    "config-negative-runtime": _c(lambda w: _config(w, "max_runtime_hours = -1\n"), 2, "max_runtime_hours"),
    "config-binary-garbage": _c(lambda w: _config(w, b"\xff\xfe\x00\x81garbage\x00\x9c"), 2, "console.toml"),
    "config-missing-file": _c(lambda w: ["--config", str(w.scratch / "nope.toml"), "runs"], 2, "does not exist"),
    "config-is-a-directory": _c(lambda w: ["--config", str(w.scratch), "runs"], 2),
    "env-wrong-type": _c(lambda w: ["runs"], 2, "RC_WATCHDOG__INTERVAL_S",
                         env=lambda w: {"RC_WATCHDOG__INTERVAL_S": "soon"}),
    "env-bad-profile": _c(lambda w: ["runs"], 2, "unknown profile", env=lambda w: {"RC_PROFILE": "gcp"}),
    "flag-bad-profile": _c(lambda w: ["--profile", "prod; rm -rf /", "runs"], 2, "unknown profile"),
    # checklists
    "checklist-toml-syntax": _c(lambda w: _checklist(w, '[[steps]]\nname = = "fetch"\n'), 2, "TOML syntax error"),
    "checklist-unknown-step": _c(lambda w: _checklist(w, '[[steps]]\nname = "launch-rocket"\n'), 2, "unknown step"),
    "checklist-unknown-param": _c(lambda w: _checklist(w, ONE_SYMBOL + 'epoks = 3\n[[steps]]\nname = "fetch"\n'),
                                  2, "unknown parameter 'epoks'"),
    "checklist-param-wrong-type": _c(lambda w: _checklist(w, ONE_SYMBOL + 'days = "many"\n[[steps]]\nname = "fetch"\n'),
                                     2, "days"),
    "checklist-symbol-shell-metachars": _c(
        lambda w: _checklist(w, '[params]\nsymbols = ["BTC-USD; rm -rf ~"]\n[[steps]]\nname = "fetch"\n'),
        2, "not a symbol"),
    "checklist-binary-garbage": _c(lambda w: _checklist(w, bytes(range(256))), 2),
    "checklist-is-a-directory": _c(lambda w: ["run", "--checklist", str(w.scratch)], 2),
    "plan-unknown-checklist": _c(lambda w: ["plan", "--checklist", "../../etc/passwd"], 2),
    # symbols with shell metacharacters, on every command that takes them
    "run-symbols-command-substitution": _c(lambda w: ["run", "--checklist", "retrain", "--symbols", "BTC-USD,$(id)"],
                                           2, "not a symbol"),
    "fetch-symbols-pipe": _c(lambda w: ["data", "fetch", "--symbols", "BTC-USD|nc", "--days", "1"], 2, "not a symbol"),
    "features-build-symbols-backticks": _c(lambda w: ["features", "build", "--symbols", "`reboot`"], 2, "not a symbol"),
    "features-list-symbol-semicolon": _c(lambda w: ["features", "list", "--symbol", "ETH-USD;ls"], 2),
    "features-verify-symbols-newline": _c(lambda w: ["features", "verify", "--symbols", "ETH-USD\nrm"], 2),
    "alignment-symbols-and": _c(lambda w: ["check", "alignment", "--symbols", "BTC-USD&&x"], 2),
    "dryrun-symbols-path": _c(lambda w: ["dryrun", "--symbols", "../ETH-USD"], 2),
    "gate-verify-symbols-glob": _c(lambda w: ["gate", "verify", "--symbols", "*"], 2),
    "import-symbol-redirect": _c(lambda w: _import(w, GOOD_CANDLES, symbol="ETH-USD>/etc/x"), 2),
    "import-timeframe-unknown": _c(lambda w: _import(w, GOOD_CANDLES, timeframe="7x"), 2),
    # dates
    "fetch-end-before-start": _c(lambda w: ["data", "fetch", "--symbols", "ETH-USD", "--start", "2024-02-01",
                                            "--end", "2024-01-01"], 2),
    "fetch-start-unparseable": _c(lambda w: ["data", "fetch", "--symbols", "ETH-USD", "--start", "last tuesday"], 2),
    "fetch-start-impossible-date": _c(lambda w: ["data", "fetch", "--symbols", "ETH-USD", "--start", "2024-13-45"], 2),
    "fetch-days-and-start": _c(lambda w: ["data", "fetch", "--days", "3", "--start", "2024-01-01"], 2),
    "models-upload-bad-trained-date": _c(lambda w: ["models", "upload", str(w.write("m/x.txt", "x").parent),
                                                    "--run-id", "r1", "--trained-date", "2024-99-01"], 2, "2024-99-01"),
    # paths
    "import-file-missing": _c(lambda w: ["data", "import", "ETH-USD", "1m", str(w.scratch / "none.csv")], 2),
    "import-file-is-directory": _c(lambda w: ["data", "import", "ETH-USD", "1m", str(w.scratch)], 2),
    "alignment-models-missing": _c(lambda w: ["check", "alignment", "--models", str(w.scratch / "no-models")], 2),
    "gate-verify-models-is-file": _c(lambda w: ["gate", "verify", "--models", str(w.write("f", "x"))], 2),
    "sync-local-missing": _c(lambda w: ["sync", str(w.scratch / "nothing"), "i-0abc:rc/data"], 2),
    "sync-destination-without-remote": _c(lambda w: ["sync", str(w.scratch), "i-0abc"], 2, "INSTANCE:REMOTE"),
    "models-download-version-escape": _c(lambda w: ["models", "download", "../../../etc"], 2),
    "features-verify-out-is-file": _c(lambda w: ["features", "verify", "--symbols", "ETH-USD",
                                                 "--out", str(w.write("f", "x"))], 2),
    # arguments of the commands that would start the sandbox: refused before it starts
    "dryrun-models-missing": _c(lambda w: ["dryrun", "--models", str(w.scratch / "no-models")], 2, "does not exist"),
    "dryrun-models-is-file": _c(lambda w: ["dryrun", "--models", str(w.write("f", "x"))], 2),
    "dryrun-models-empty": _c(lambda w: ["dryrun", "--models", str(w.write("empty/.keep", "").parent)], 2,
                              "no trained models"),
    "dryrun-iterations-zero": _c(lambda w: ["dryrun", "--iterations", "0"], 2, "iterations"),
    "dryrun-iterations-not-a-number": _c(lambda w: ["dryrun", "--iterations", "many"], 2, "iterations"),
    "dryrun-symbol-without-feature-file": _c(lambda w: ["dryrun", "--symbols", "SOL-USD", "--models",
                                                        str(_models_dir(w, _checkpoint_without()))], 2, "SOL-USD"),
    "alignment-symbol-without-model": _c(lambda w: ["check", "alignment", "--symbols", "ETH-USD,BTC-USD", "--models",
                                                    str(_models_dir(w, _checkpoint_without()))], 2),
    "alignment-models-empty": _c(lambda w: ["check", "alignment", "--models", str(w.write("empty/.keep", "").parent)],
                                 2, "no trained models"),
    "models-download-version-malformed": _c(lambda w: ["models", "download", "20260101-run-1"], 2, "YYYYMMDDTHHMMSSZ"),
    "models-download-version-shell": _c(lambda w: ["models", "download", "20260101T000000Z-$(id)"], 2),
    "models-download-to-is-file": _c(lambda w: ["models", "download", "--to", str(w.write("f", "x"))], 2),
    # CSVs for `console data import`
    "csv-missing-columns": _c(lambda w: _import(w, _csv(["1700000000,1,2"], header="open_time,open,high")), 2),
    "csv-unparseable-times": _c(lambda w: _import(w, _csv(["yesterday,1,2,0.5,1.5,10", "today,1,2,0.5,1.5,10"])), 2),
    "csv-duplicate-timestamps": _c(lambda w: _import(w, _csv(["1700000000,1,2,0.5,1.5,10",
                                                              "1700000000,1,2,0.5,1.5,10"])), 2),
    "csv-non-monotonic": _c(lambda w: _import(w, _csv(["1700000120,1,2,0.5,1.5,10", "1700000000,1,2,0.5,1.5,10",
                                                       "1700000060,1,2,0.5,1.5,10"])), 2),
    "csv-negative-prices": _c(lambda w: _import(w, _csv(["1700000000,-1,2,-3,1.5,10",
                                                         "1700000060,1,2,0.5,1.5,10"])), 2),
    "csv-high-below-low": _c(lambda w: _import(w, _csv(["1700000000,1,0.5,2,1.5,10"])), 2),
    "csv-non-numeric-price": _c(lambda w: _import(w, _csv(["1700000000,one,2,0.5,1.5,10"])), 2),
    "csv-empty-file": _c(lambda w: _import(w, ""), 2),
    "csv-header-only": _c(lambda w: _import(w, _csv([])), 2),
    "csv-binary-garbage": _c(lambda w: _import(w, secrets.token_bytes(2048)), 2),
    # parquet feature files: an unreadable or foreign feature file is bad input (exit 2); a
    # readable one with the wrong counts fails the check (exit 1)
    "features-verify-truncated-parquet": _c(
        lambda w: ["features", "verify", "--symbols", "ETH-USD",
                   "--out", str(_feature_file(w, _real_parquet_bytes(w)[:-40]))], 2, "ETH-USD"),
    "features-verify-foreign-parquet": _c(
        lambda w: ["features", "verify", "--symbols", "ETH-USD",
                   "--out", str(_feature_file(w, _real_parquet_bytes(w)))],
        2, "ETH-USD"),
    "features-verify-garbage-parquet": _c(
        lambda w: ["features", "verify", "--symbols", "ETH-USD", "--out", str(_feature_file(w, b"PAR1" + b"\0" * 64))],
        2, "ETH-USD"),
    "alignment-truncated-feature-file": _c(
        lambda w: _alignment_with_features(w, _real_parquet_bytes(w)[:-40]), 2),
    # checkpoints
    "alignment-garbage-model-pt": _c(lambda w: ["check", "alignment", "--models",
                                                str(_models_dir(w, secrets.token_bytes(512)))], 2),
    "alignment-model-pt-no-input-size": _c(lambda w: ["check", "alignment", "--models",
                                                      str(_models_dir(w, _checkpoint_without("input_size")))], 2),
    "alignment-model-pt-no-feature-names": _c(lambda w: ["check", "alignment", "--models",
                                                         str(_models_dir(w, _checkpoint_without("feature_names")))], 2),
    "alignment-model-pt-not-a-dict": _c(lambda w: ["check", "alignment", "--models",
                                                   str(_models_dir(w, [1, 2, 3]))], 2),
    # gate records
    "gate-json-not-json": _c(lambda w: _gate_models(w, '{"passed": true,'), 4),
    "gate-json-not-a-record": _c(lambda w: _gate_models(w, '["passed"]'), 4),
    "gate-json-forged-signature": _c(lambda w: _gate_models(w, json.dumps(
        {"record": {"passed": True, "expires_at": 4102444800, "symbols": ["ETH-USD"]},
         "signature": secrets.token_hex(32)})), 4),
    # credentials
    "aws-instance-list-no-credentials": _c(lambda w: ["--profile", "aws", "instance", "list"], 2, "credentials"),
    "aws-instance-prices-no-credentials": _c(lambda w: ["--profile", "aws", "instance", "prices"], 2, "credentials"),
    "aws-terminate-no-credentials": _c(lambda w: ["--profile", "aws", "instance", "terminate", "i-0abc"], 2),
    "aws-models-list-no-bucket": _c(lambda w: ["--profile", "aws", "models", "list"], 2),
    "aws-key-id-without-secret": _c(lambda w: ["--profile", "aws", "instance", "list"], 2,
                                    env=lambda w: {"AWS_ACCESS_KEY_ID": _fake_aws_key_id()}),
    # host keys
    "exec-unknown-instance": _c(lambda w: ["exec", "i-0123456789abcdef0", "--", "true"], 2, "no instance"),
    "sync-unknown-instance": _c(lambda w: ["sync", str(w.scratch), "i-0123456789abcdef0:rc/data"], 2, "no instance"),
    "exec-instance-id-shell-metachars": _c(lambda w: ["exec", "i-1;reboot", "--", "true"], 2, "not an instance id"),
    "exec-terminated-instance": _c(lambda w: ["exec", _known_static_instance(w, None, state="terminated"),
                                              "--", "true"], 2, "terminated"),
    "exec-host-key-mismatch": _c(lambda w: ["exec", _known_static_instance(w, w.ssh), "--", "true"],
                                 3, "changed", ssh=True),
    "sync-host-key-mismatch": _c(lambda w: ["sync", str(w.scratch), _known_static_instance(w, w.ssh) + ":rc/data"],
                                 3, "changed", ssh=True),
    "exec-no-pin-no-publication": _c(lambda w: ["exec", _known_static_instance(w, w.ssh, pin_other_key=False),
                                                "--", "true"], 2, "no pinned host key", ssh=True),
}


def _alignment_with_features(w: World, feature_bytes: bytes) -> list[str]:
    models = _models_dir(w, _checkpoint_without())
    # the training feature file the alignment check reads: <data>/features/<SYMBOL>.parquet
    (w.data / "features" / "ETH-USD.parquet").write_bytes(feature_bytes)
    return ["check", "alignment", "--models", str(models)]


def _params() -> Iterator[object]:
    for name, case in CASES.items():
        marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
        yield pytest.param(name, id=name, marks=marks)


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    w = _make_world(tmp_path)
    yield w
    if (w.state / "sandbox").exists():  # never leave a daemon behind, whatever the case did
        from remote.sandbox import lifecycle

        lifecycle.down(w.state)


@pytest.mark.parametrize("name", list(_params()))
def test_malformed_input_is_one_line_documented_exit_and_changes_nothing(name: str, world: World,
                                                                        request: pytest.FixtureRequest) -> None:
    case, w = CASES[name], world
    if case.ssh:
        w.ssh = request.getfixturevalue("ssh_server")  # type: ignore[attr-defined]
    args = case.build(w)
    env = {"RC_STATE_DIR": str(w.state), **(case.env(w) if case.env else {})}
    store_before, data_before = store_snapshot(w.state), data_listing(w.data)

    proc = console(*args, env=env, cwd=w.scratch, timeout=60)

    assert_one_line_error(proc, case.code, *case.needles)
    assert store_snapshot(w.state) == store_before, "the state store changed"
    assert data_listing(w.data) == data_before, "the data directory changed"
    # Every command refuses before it would reach the sandbox: no daemon, not even its pid file.
    assert not (w.state / "sandbox").exists(), "bad input started the sandbox"


def test_the_battery_is_at_least_forty_cases() -> None:
    assert len(CASES) >= 40


# -- cases refused inside one console process --------------------------------------------------
#
# A console process costs seconds to start on a loaded machine, so the cases below (each one
# refused while reading its input, long before any network or sandbox) run one after another
# through `console.cli.main` inside ONE subprocess, each with its own world, environment and
# working directory, with the same assertions as above. Cases that need a server, or that
# exercise process start-up itself, stay in CASES.

BATCH_DRIVER = r"""
import contextlib, io, json, os, sys
from console.cli import main

jobs = json.load(open(sys.argv[1]))
base = dict(os.environ)
results = {}
for job in jobs:
    os.environ.clear()
    os.environ.update({**base, **job["env"]})
    os.chdir(job["cwd"])
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(job["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    results[job["name"]] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
json.dump(results, open(sys.argv[2], "w"))
"""


def _toml_checklist(w: World, params: str = "", step: str = "fetch", step_extra: str = "") -> list[str]:
    """A one-step checklist whose shared [params] (and step keys) carry the malformed value."""
    return _checklist(w, f'[params]\nsymbols = ["ETH-USD"]\n{params}\n[[steps]]\nname = "{step}"\n{step_extra}\n')


def _env_case(values: dict[str, str], *needles: str) -> Case:
    return _c(lambda w: ["runs"], 2, *needles, env=lambda w: values)


def _number_cases() -> dict[str, Case]:
    """nan, inf, zero, negatives and huge values for every numeric setting, flag and checklist value."""
    cases: dict[str, Case] = {}
    settings = {  # environment variable -> the setting's name in the message
        "RC_BUDGET__RUN_USD": "budget.run_usd",
        "RC_BUDGET__DAILY_USD": "budget.daily_usd",
        "RC_BUDGET__INSTANCE_USD": "budget.instance_usd",
        "RC_WATCHDOG__INTERVAL_S": "watchdog.interval_s",
        "RC_WATCHDOG__HEARTBEAT_TIMEOUT_S": "watchdog.heartbeat_timeout_s",
        "RC_WATCHDOG__IDLE_TIMEOUT_S": "watchdog.idle_timeout_s",
        "SAGEMAKER_MAX_RUNTIME_HOURS": "max_runtime_hours",
    }
    for var, name in settings.items():
        for label, value in (("nan", "nan"), ("inf", "inf"), ("zero", "0"), ("negative", "-1"), ("huge", "1e12")):
            cases[f"env-{var.lower()}-{label}"] = _env_case({var: value}, name)
    for key, value in (("budget]\nrun_usd", "nan"), ("watchdog]\nupload_grace_s", "-inf"), ("gate]\nexpiry_hours", "inf"),
                       ("gate]\nmin_hit_rate", "2.0"), ("gate]\nmax_p_value", "0.0"), ("gate]\nmin_samples", "0"),
                       ("cloud]\nmax_spot_price_usd", "nan")):
        section, _, field_name = key.partition("]\n")
        cases[f"config-{section}-{field_name}-{value}"] = _c(
            lambda w, k=key, v=value: _config(w, f"[{k} = {v}\n"), 2, f"{section}.{field_name}")
    for flag, value in (("--budget", "inf"), ("--budget", "nan"), ("--budget", "0"), ("--max-hours", "nan"),
                        ("--max-hours", "inf"), ("--max-hours", "-1")):
        cases[f"launch-{flag[2:]}-{value}"] = _c(lambda w, f=flag, v=value: ["instance", "launch", f, v], 2, flag)
    for value in ("nan", "inf", "-1"):
        cases[f"exec-timeout-{value}"] = _c(
            lambda w, v=value: ["exec", "i-0123456789abcdef0", "--timeout", v, "--", "true"], 2, "--timeout")
    checklist_values = {  # shared parameter of the launch step, or the step's policy
        "budget-nan": ("budget_usd = nan", "launch", "", "budget_usd"),
        "budget-inf": ("budget_usd = inf", "launch", "", "budget_usd"),
        "budget-zero": ("budget_usd = 0.0", "launch", "", "budget_usd"),
        "runtime-inf": ("max_runtime_hours = inf", "launch", "", "max_runtime_hours"),
        "runtime-huge": ("max_runtime_hours = 1e9", "launch", "", "max_runtime_hours"),
        "timeout-nan": ("", "fetch", "timeout_s = nan", "timeout_s"),
        "timeout-zero": ("", "fetch", "timeout_s = 0", "timeout_s"),
        "timeout-huge": ("", "fetch", "timeout_s = 1e12", "timeout_s"),
        "backoff-inf": ("", "fetch", "backoff_s = inf", "backoff_s"),
        "backoff-negative": ("", "fetch", "backoff_s = -1.0", "backoff_s"),
        "retries-negative": ("", "fetch", "retries = -1", "retries"),
        "retries-fraction": ("", "fetch", "retries = 2.5", "retries"),
        "retries-boolean": ("", "fetch", "retries = true", "retries"),
        "days-boolean": ("days = true", "fetch", "", "days"),
        "days-huge": ("days = 1000000", "fetch", "", "days"),
    }
    for label, (params, step, extra, needle) in checklist_values.items():
        cases[f"checklist-{label}"] = _c(
            lambda w, p=params, s=step, e=extra: (
                _checklist(w, f'{p}\n[[steps]]\nname = "{s}"\n{e}\n') if s == "launch" else _toml_checklist(w, p, s, e)
            ),
            2, needle)
    return cases


def _fifo(w: World, name: str) -> str:
    path = w.scratch / name
    os.mkfifo(path)
    return str(path)


OVERSIZE = "# padding\n" * (1 << 17)  # over 1 MiB of comments


BATCHED: dict[str, Case] = {
    **_number_cases(),
    "env-watchdog-section-not-json": _env_case({"RC_WATCHDOG": "{garbage"}, "watchdog", "JSON"),
    # inputs that are not regular files of a sane size
    "checklist-dev-zero": _c(lambda w: ["run", "--checklist", "/dev/zero"], 2, "not a regular file"),
    "checklist-fifo": _c(lambda w: ["run", "--checklist", _fifo(w, "checklist.toml")], 2, "not a regular file"),
    "checklist-oversize": _c(lambda w: _checklist(w, OVERSIZE), 2, "limit"),
    "config-dev-zero": _c(lambda w: ["--config", "/dev/zero", "runs"], 2, "not a regular file"),
    "config-fifo": _c(lambda w: ["--config", _fifo(w, "console.toml"), "runs"], 2, "not a regular file"),
    "config-oversize": _c(lambda w: _config(w, OVERSIZE), 2, "limit"),
    "import-dev-zero": _c(lambda w: ["data", "import", "ETH-USD", "1m", "/dev/zero"], 2, "not a regular file"),
    "import-fifo": _c(lambda w: ["data", "import", "ETH-USD", "1m", _fifo(w, "c.csv")], 2, "not a regular file"),
    # checklist tables of the wrong type
    "checklist-params-not-a-table": _c(lambda w: _checklist(w, 'params = 5\n[[steps]]\nname = "fetch"\n'), 2, "params"),
    "checklist-step-params-not-a-table": _c(
        lambda w: _toml_checklist(w, step_extra='params = "fast"'), 2, "params of step 'fetch'"),
    "checklist-profiles-not-a-table": _c(lambda w: _checklist(w, 'profiles = 3\n[[steps]]\nname = "fetch"\n'), 2),
    "checklist-defaults-not-a-table": _c(lambda w: _checklist(w, 'defaults = [1]\n[[steps]]\nname = "fetch"\n'), 2),
    # normalisation
    "env-state-dir-empty": _env_case({"RC_STATE_DIR": ""}, "state_dir", "empty"),
    "run-symbols-empty": _c(lambda w: ["run", "--checklist", "retrain", "--symbols", ""], 2, "no symbols"),
    "run-symbols-only-commas": _c(lambda w: ["run", "--checklist", "retrain", "--symbols", ",,"], 2, "no symbols"),
    "fetch-symbols-empty": _c(lambda w: ["data", "fetch", "--symbols", "", "--days", "1"], 2, "no symbols"),
    "features-build-symbols-empty": _c(lambda w: ["features", "build", "--symbols", " "], 2, "no symbols"),
    "dryrun-symbols-empty": _c(lambda w: ["dryrun", "--symbols", ""], 2, "no symbols"),
    "run-symbols-sharp-s": _c(lambda w: ["run", "--checklist", "retrain", "--symbols", "ß-USD"], 2, "ASCII"),
    "fetch-symbols-dotless-i": _c(lambda w: ["data", "fetch", "--symbols", "ıNJ-USD", "--days", "1"], 2, "ASCII"),
    "run-symbols-duplicate": _c(lambda w: ["run", "--checklist", "retrain", "--symbols", "BTC-USD,btc-usd"], 2,
                                "listed twice"),
    "features-build-symbols-duplicate": _c(lambda w: ["features", "build", "--symbols", "ETH-USD,ETH-USD"], 2,
                                           "listed twice"),
    "checklist-symbols-duplicate": _c(lambda w: _checklist(w, '[params]\nsymbols = ["ETH-USD", "ETH-USD"]\n'
                                                              '[[steps]]\nname = "fetch"\n'), 2, "listed twice"),
    "checklist-epochs-boolean": _c(lambda w: _toml_checklist(w, "epochs = true", "train"), 2, "epochs"),
    "models-download-version-fullwidth-digits": _c(
        lambda w: ["models", "download", "２０２６０１０１T000000Z-run1"], 2, "YYYYMMDDTHHMMSSZ"),
}


def _clean_environment(home: Path) -> dict[str, str]:
    """What tests/conftest.py's autouse fixture gives a test (module fixtures run before it)."""
    from tests.conftest import _SCRUB_NAMES, _SCRUB_PREFIXES

    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES) and k not in _SCRUB_NAMES}
    env.update({"HOME": str(home), "XDG_STATE_HOME": str(home / "state"), "XDG_CONFIG_HOME": str(home / "config"),
                "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache"),
                "AWS_CONFIG_FILE": str(home / "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
                "AWS_EC2_METADATA_DISABLED": "true", "RC_WATCHDOG__AUTOSTART": "false", "COLUMNS": "200"})
    return env


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[World, tuple, subprocess.CompletedProcess[str]]]:
    """Every BATCHED case built in its own world, then all run in one console process."""
    root = tmp_path_factory.mktemp("batch")
    worlds, jobs = {}, []
    for number, (name, case) in enumerate(BATCHED.items()):
        w = _make_world(root / f"case{number}")
        args = case.build(w)
        env = {"RC_STATE_DIR": str(w.state), **(case.env(w) if case.env else {})}
        worlds[name] = (w, (store_snapshot(w.state), data_listing(w.data)))
        jobs.append({"name": name, "argv": args, "env": env, "cwd": str(w.scratch)})
    (root / "jobs.json").write_text(json.dumps(jobs))
    proc = subprocess.run([sys.executable, "-c", BATCH_DRIVER, str(root / "jobs.json"), str(root / "results.json")],
                          env=_clean_environment(root / "home"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((root / "results.json").read_text())
    return {name: (w, before, subprocess.CompletedProcess(jobs[i]["argv"], results[name]["code"],
                                                         results[name]["stdout"], results[name]["stderr"]))
            for i, (name, (w, before)) in enumerate(worlds.items())}


@pytest.mark.parametrize("name", list(BATCHED))
def test_malformed_input_refused_in_one_process_is_one_line_and_changes_nothing(name: str, batch) -> None:
    case = BATCHED[name]
    w, (store_before, data_before), proc = batch[name]
    assert_one_line_error(proc, case.code, *case.needles)
    assert store_snapshot(w.state) == store_before, "the state store changed"
    assert data_listing(w.data) == data_before, "the data directory changed"
    assert not (w.state / "sandbox").exists(), "bad input started the sandbox"


def test_the_battery_has_grown_past_the_first_probe() -> None:
    assert len(CASES) + len(BATCHED) >= 87 + 60
