"""Helpers for the end-to-end fault tests: a small retrain checklist, the real `console`
in subprocesses, and looks behind the sandbox (its EC2, its S3, its instance roots).

Everything here drives real things: the `console` executable, the sandbox daemon (moto
over HTTP, asyncssh hosts), SQLite. Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import console.checklist
from console.state import StateStore

CONSOLE = [sys.executable, "-m", "console"]
SHIPPED_RETRAIN = Path(console.checklist.__file__).parent / "checklists" / "retrain.toml"
STEPS = ("fetch", "features", "verify-counts", "launch", "sync", "train", "upload", "terminate", "download",
         "alignment")
_SCRUB_PREFIXES = ("AWS_", "RC_", "SAGEMAKER_", "BOTO_")
_SCRUB_NAMES = ("COINGECKO_API_KEY", "TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", "CLOUD_TRAINING_PROVIDER",
                "SSH_AUTH_SOCK")


def small_retrain_checklist(path: Path, *, epochs: int = 1, name: str = "retrain-e2e") -> Path:
    """A copy of the shipped retrain checklist cut down for tests: ETH-USD only, 3 days,
    ``epochs`` epochs of the runbook's model, every step up to alignment (no dryrun), and
    short retry backoffs (the faults are what is tested, not the waiting)."""
    text = SHIPPED_RETRAIN.read_text()
    text = text[: text.index('[[steps]]\nname = "dryrun"')]
    text = re.sub(r'(?m)^name = "retrain"$', f'name = "{name}"', text, count=1)
    text = re.sub(r"(?m)^symbols = .*$", 'symbols = ["ETH-USD"]', text)
    text = re.sub(r"(?m)^iterations = .*\n", "", text)  # the dryrun's only parameter
    text = re.sub(r"(?m)^days = \d+$", "days = 3", text)
    text = re.sub(r"(?m)^epochs = \d+$", f"epochs = {epochs}", text)
    text = re.sub(r"(?m)^backoff_s = [\d.]+$", "backoff_s = 0.3", text)
    # The runbook's model, not the sandbox's seconds-long one: the faults these tests inject
    # (a kill, a dropped connection, a spot interruption) must land while an epoch is running.
    text = re.sub(r"(?m)^(window|num_layers|sample_stride|weight_decay) = [\d.]+\n", "", text)
    path.write_text(text)
    return path


def console_env(home: Path, state_dir: Path) -> dict[str, str]:
    """The environment a test's `console` runs in: none of the developer's credentials or
    config, a temporary HOME, its own state dir, no background watchdog."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES) and k not in _SCRUB_NAMES}
    env.update(HOME=str(home), XDG_STATE_HOME=str(home / ".state"), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CACHE_HOME=str(home / ".cache"), AWS_CONFIG_FILE=str(home / "no-aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(home / "no-aws-credentials"), AWS_EC2_METADATA_DISABLED="true",
               RC_STATE_DIR=str(state_dir), RC_WATCHDOG__AUTOSTART="false", COLUMNS="200")
    return env


@dataclass
class World:
    """One state dir (and so one sandbox daemon) shared by the tests of a module."""

    root: Path
    checklist: Path
    env: dict[str, str]
    runs: dict[str, str] = field(default_factory=dict)
    """Run ids the tests left behind, by purpose (e.g. "killed" for the completed run)."""

    @property
    def state_dir(self) -> Path:
        return Path(self.env["RC_STATE_DIR"])

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    def store(self) -> StateStore:
        return StateStore.open(self.state_dir)

    def start(self, *args: str, log_name: str) -> subprocess.Popen[bytes]:
        """``console ARGS`` in its own session (so a SIGKILL takes the whole group), output to a file."""
        out = open(self.root / f"{log_name}.out", "wb")
        try:
            return subprocess.Popen([*CONSOLE, *args], env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(self.root))
        finally:
            out.close()

    def console(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CONSOLE, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd=str(self.root))

    def output(self, log_name: str) -> str:
        return (self.root / f"{log_name}.out").read_text(errors="replace")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, *, proc: subprocess.Popen | None = None,
             every: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy (and return it); fail loudly on timeout or if
    ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            value = predicate()
            if value:
                return value
            raise AssertionError(f"console exited {proc.returncode} before {what}")
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def newest_run_id(store: StateStore, *, not_in: set[str] = frozenset()) -> str | None:
    runs = [r for r in store.list_runs(5) if r.id not in not_in]
    return runs[0].id if runs else None


def step_state(store: StateStore, run_id: str, step: str) -> str:
    record = store.get_step(run_id, step)
    return record.state if record is not None else "missing"


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the console's whole process group (its SSH children too), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def ec2_client(state_dir: Path) -> Any:
    from remote.providers.aws_client import make_client
    from remote.sandbox.endpoints import SandboxEndpoints

    return make_client("ec2", SandboxEndpoints.read(state_dir).aws_target())


def s3_client(state_dir: Path) -> Any:
    import boto3

    from remote.sandbox.endpoints import SandboxEndpoints

    endpoints = SandboxEndpoints.read(state_dir)
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoints.moto_url, region_name=endpoints.region,
        aws_access_key_id="TEST" + secrets.token_hex(6).upper(), aws_secret_access_key=secrets.token_urlsafe(30))


def instances_of_run(state_dir: Path, run_id: str) -> list[dict[str, Any]]:
    """Every EC2 instance ever tagged with ``run_id`` in the sandbox (terminated ones too)."""
    from remote.providers.base import RUN_ID_TAG

    pages = ec2_client(state_dir).describe_instances(Filters=[{"Name": f"tag:{RUN_ID_TAG}", "Values": [run_id]}])
    return [i for r in pages["Reservations"] for i in r["Instances"]]


def live_instances_of_run(state_dir: Path, run_id: str) -> list[str]:
    """Ids of the run's instances that are pending or running right now."""
    return [i["InstanceId"] for i in instances_of_run(state_dir, run_id)
            if i["State"]["Name"] in ("pending", "running")]


def checkpoint_problems(state_dir: Path, run_id: str, symbols: list[str]) -> list[str]:
    """What is wrong with the run's checkpoints in the sandbox's S3 (``checkpoints/<run>/<SYMBOL>/``):
    a pointer missing, or naming an object that is missing or whose bytes do not match the
    sha256 in the pointer and in the object's metadata."""
    import json

    from botocore.exceptions import ClientError

    from console.resources import SANDBOX_BUCKET

    s3 = s3_client(state_dir)
    problems = []
    for symbol in symbols:
        prefix = f"checkpoints/{run_id}/{symbol}/"
        try:
            pointer = json.loads(s3.get_object(Bucket=SANDBOX_BUCKET, Key=prefix + "last.json")["Body"].read())
            obj = s3.get_object(Bucket=SANDBOX_BUCKET, Key=pointer["key"])
        except (ClientError, KeyError, ValueError) as exc:
            problems.append(f"{prefix}: {exc}")
            continue
        digest = hashlib.sha256(obj["Body"].read()).hexdigest()
        if digest != pointer["sha256"] or obj.get("Metadata", {}).get("sha256") != digest:
            problems.append(f"{pointer['key']}: sha256 does not match")
    return problems


def instance_root(state_dir: Path, instance_id: str) -> Path:
    """The sandbox host's root directory (its HOME): jobs, artifacts, checkpoints."""
    return state_dir / "sandbox" / "instances" / instance_id


def model_folders(models_dir: Path) -> list[Path]:
    """Every model folder (``models/<SYMBOL>/<version>/``) in a models directory."""
    base = models_dir / "models"
    return sorted(p for p in base.glob("*/*") if p.is_dir()) if base.is_dir() else []


def verify_model_folder(folder: Path) -> list[str]:
    """Problems with one model folder: no sha256.txt, a listed file missing or changed."""
    sums = folder / "sha256.txt"
    if not sums.is_file():
        return [f"{folder}: no sha256.txt"]
    problems = []
    listed = 0
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        listed += 1
        path = folder / name.strip().lstrip("*")
        if not path.is_file():
            problems.append(f"{path}: listed in sha256.txt but missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{path}: sha256 does not match")
    if listed == 0:
        problems.append(f"{sums}: empty")
    return problems


def half_written_files(root: Path) -> list[Path]:
    """Files a writer left half-way: ``*.tmp``, ``.tmp-*``, ``*.part`` and our ``.rc-tmp-`` / ``.rc-partial-`` names."""
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*")
                  if p.name.endswith(".tmp") or p.name.startswith(".tmp") or ".rc-tmp-" in p.name or p.name.startswith(".rc-partial-")
                  or p.name.endswith(".part"))


def tree_snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` (to prove nothing changed)."""
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".registry.lock"}


def epoch_lines(text: str) -> list[str]:
    """The JSON progress lines of a training log (a step log or the job's own log), in order."""
    out = []
    for line in text.splitlines():
        brace = line.find("{")
        if brace >= 0 and '"event"' in line:
            out.append(line[brace:])
    return out
