"""Train many symbols on the leased host: ``python -m training.scheduler --symbols BTC-USD,ETH-USD``.

Each symbol is one job, a ``python -m training.train --family F --symbol ...`` subprocess in
its own process group (``--family``, default ``lstm``: what is trained, `training.families`),
so a timeout can kill it and everything it started. Modes:

- ``sequential``: one job at a time;
- ``parallel``: every job at once;
- ``hybrid`` (default): batches of ``--max-concurrent`` jobs, one batch after another;
  ``--max-concurrent auto`` sizes the batches to this host's GPUs (`training.gpu_slots`:
  several jobs per GPU, spread over them with ``CUDA_VISIBLE_DEVICES``; two without one)
  and says how in a ``sizing`` line.

The resume ledger (``<out>/ledger.json``, rewritten atomically on every change) records
each symbol's state. A rerun skips symbols that already succeeded (unless ``--force``)
and reruns the rest, which resume from their per-epoch checkpoints. A job that fails
with exit 1 or times out is retried up to ``--retries`` times with doubling backoff; bad
input (exit 2) and a guard refusal (exit 3) are not retried. One symbol's failure never
stops the others.

Stdout is one JSON object per line: the jobs' own lines (see `training.train`) relayed
as they arrive, plus ``job_start``, ``job_end``, ``retry``, ``skip`` and a final ``summary``
(also written to ``<out>/summary.json``). The per-symbol table goes to stderr.
Exit codes: 0 every symbol succeeded, 1 some failed, 2 bad input, 3 guard refused.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from training import guard
from training.errors import EXIT_BAD_INPUT, EXIT_GUARD, BadTrainingConfig, TrainingError
from training.gpu_slots import Sizing, auto_sizing, find_gpus
from training.registry import check_symbol, finite_json, utc_now_iso, write_json_atomic

MODES = ("sequential", "parallel", "hybrid")
DEFAULT_TIMEOUT_S = 45 * 60
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF_S = 30.0
KILL_GRACE_S = 10.0
NO_RETRY_EXIT_CODES = (EXIT_BAD_INPUT, EXIT_GUARD)
TRAIN_FLAGS = (
    "epochs", "window", "horizon", "longest_feature_window", "batch_size", "hidden_size", "num_layers",
    "learning_rate", "patience", "seed", "threshold", "device", "precision", "expected_feature_hash",
)  # fmt: skip


class JobState:
    """A symbol's state in the ledger."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    """A model folder was published (whether or not it passed its gates)."""
    FAILED = "failed"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True)
class SchedulePlan:
    """What to run and how."""

    symbols: tuple[str, ...]
    out: Path
    features_dir: Path = Path("FEATURES")
    mode: str = "hybrid"
    max_concurrent: int = 2
    timeout_s: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    backoff_s: float = DEFAULT_BACKOFF_S
    force: bool = False
    config: Path | None = None
    lease: Path | None = None
    train_args: tuple[str, ...] = ()
    """Extra ``python -m training.train`` flags passed to every job (--epochs 2 ...)."""
    family: str = "lstm"
    """The model family every job trains (`training.families`)."""
    devices: tuple[str, ...] = ()
    """A GPU per job slot of a batch (`training.gpu_slots.Sizing`; ``CUDA_VISIBLE_DEVICES``); none: leave it alone."""
    sizing: str = ""
    """How ``--max-concurrent auto`` sized the batches (empty when the operator gave a number)."""

    def batches(self) -> list[tuple[str, ...]]:
        """The symbols grouped as the mode runs them."""
        if self.mode not in MODES:
            raise BadTrainingConfig(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        size = {"sequential": 1, "parallel": max(1, len(self.symbols))}.get(self.mode, max(1, self.max_concurrent))
        return [self.symbols[i : i + size] for i in range(0, len(self.symbols), size)]


class Ledger:
    """The resume ledger: per-symbol state in a JSON file, rewritten atomically under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            data = json.loads(self.path.read_text())
            self.symbols: dict[str, dict[str, Any]] = dict(data.get("symbols", {}))
        except FileNotFoundError:
            self.symbols = {}
        except ValueError:
            raise BadTrainingConfig(f"resume ledger {self.path} is corrupt; delete it to start the run over") from None

    def state(self, symbol: str) -> str:
        return self.symbols.get(symbol, {}).get("state", JobState.PENDING)

    def update(self, symbol: str, **fields: Any) -> None:
        with self._lock:
            entry = self.symbols.setdefault(symbol, {"state": JobState.PENDING, "attempts": 0})
            entry.update(fields, updated_at=utc_now_iso())
            write_json_atomic(self.path, {"version": 1, "symbols": self.symbols, "updated_at": utc_now_iso()})


@dataclass
class JobOutcome:
    """How one symbol's job ended."""

    symbol: str
    state: str
    attempts: int = 0
    exit_code: int | None = None
    seconds: float = 0.0
    last_epoch: int = 0
    model_dir: str | None = None
    passed: bool | None = None
    promoted: bool | None = None
    reasons: list[str] = field(default_factory=list)
    message: str = ""
    skipped: bool = False


class Emitter:
    """Writes JSON lines to stdout from many job threads without interleaving them."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def __call__(self, event: str | None = None, raw: str | None = None, **fields: Any) -> None:
        line = raw if raw is not None else json.dumps(finite_json({"event": event, **fields}), default=str)
        with self._lock:
            self.stream.write(line.rstrip("\n") + "\n")
            self.stream.flush()


def run_schedule(
    plan: SchedulePlan, *, emit: Emitter | None = None, sleep: Callable[[float], None] = time.sleep
) -> dict:
    """Run every job of ``plan`` (checking the guard first) and return the summary dict."""
    emit = emit or Emitter()
    for symbol in plan.symbols:
        check_symbol(symbol)
    batches = plan.batches()
    guard.check_lease(plan.lease)
    plan.out.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(plan.out / "ledger.json")
    if plan.sizing:
        emit("sizing", symbol=None, max_concurrent=plan.max_concurrent, devices=list(plan.devices), why=plan.sizing)
    began = time.time()
    outcomes: dict[str, JobOutcome] = {}
    for batch in batches:
        todo = []
        for symbol in batch:
            if ledger.state(symbol) == JobState.SUCCEEDED and not plan.force:
                entry = ledger.symbols[symbol]
                outcomes[symbol] = JobOutcome(
                    symbol, JobState.SUCCEEDED, attempts=entry.get("attempts", 0), exit_code=0,
                    model_dir=entry.get("model_dir"), passed=entry.get("passed"), promoted=entry.get("promoted"),
                    reasons=list(entry.get("reasons", [])), skipped=True,
                )  # fmt: skip
                emit("skip", symbol=symbol, reason="already succeeded (use --force to retrain)")
            else:
                todo.append(symbol)
        with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
            run_one = functools.partial(
                _run_with_retries, plan, ledger=ledger, emit=emit, sleep=sleep, concurrency=len(todo)
            )
            for outcome in pool.map(run_one, todo):
                outcomes[outcome.symbol] = outcome
    summary = _summary(plan, [outcomes[s] for s in plan.symbols], time.time() - began)
    write_json_atomic(plan.out / "summary.json", summary)
    emit("summary", **summary)
    return summary


def _run_with_retries(
    plan: SchedulePlan, symbol: str, ledger: Ledger, emit: Emitter, sleep, concurrency: int
) -> JobOutcome:
    attempts_before = int(ledger.symbols.get(symbol, {}).get("attempts", 0))
    outcome = JobOutcome(symbol, JobState.FAILED)
    for attempt in range(1, plan.retries + 2):
        ledger.update(symbol, state=JobState.RUNNING, attempts=attempts_before + attempt, started_at=utc_now_iso())
        emit("job_start", symbol=symbol, attempt=attempt)
        outcome = _run_once(plan, symbol, emit, force=plan.force and attempt == 1, concurrency=concurrency)
        outcome.attempts = attempt
        ledger.update(
            symbol,
            state=outcome.state,
            exit_code=outcome.exit_code,
            model_dir=outcome.model_dir,
            passed=outcome.passed,
            promoted=outcome.promoted,
            reasons=outcome.reasons,
            message=outcome.message,
            last_epoch=outcome.last_epoch,
            finished_at=utc_now_iso(),
        )
        emit("job_end", symbol=symbol, attempt=attempt, state=outcome.state, exit_code=outcome.exit_code,
             seconds=round(outcome.seconds, 3), message=outcome.message)  # fmt: skip
        if outcome.state == JobState.SUCCEEDED or outcome.exit_code in NO_RETRY_EXIT_CODES:
            break
        if attempt <= plan.retries:
            delay = plan.backoff_s * (2 ** (attempt - 1))
            emit("retry", symbol=symbol, attempt=attempt + 1, in_seconds=delay)
            sleep(delay)
    return outcome


def device_for(plan: SchedulePlan, symbol: str) -> str:
    """The GPU of ``symbol``'s job: its batch position's slot in ``plan.devices``."""
    batch = next(b for b in plan.batches() if symbol in b)
    return plan.devices[batch.index(symbol) % len(plan.devices)]


def job_command(plan: SchedulePlan, symbol: str, *, fresh: bool) -> list[str]:
    """The ``python -m training.train`` command line for one symbol."""
    cmd = [sys.executable, "-m", "training.train", "--family", plan.family, "--symbol", symbol,
           "--features-dir", str(plan.features_dir), "--out", str(plan.out)]  # fmt: skip
    if plan.config is not None:
        cmd += ["--config", str(plan.config)]
    if plan.lease is not None:
        cmd += ["--lease", str(plan.lease)]
    if fresh:
        cmd.append("--fresh")
    return cmd + list(plan.train_args)


def _run_once(plan: SchedulePlan, symbol: str, emit: Emitter, *, force: bool, concurrency: int = 1) -> JobOutcome:
    outcome = JobOutcome(symbol, JobState.FAILED)
    began = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Concurrent jobs each spinning up one OpenMP thread per core oversubscribe the CPU badly
    # (10x slower on a busy 2-core box); share the cores unless the operator chose otherwise.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, concurrency))))
    if plan.devices and "CUDA_VISIBLE_DEVICES" not in env:
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # CUDA's numbering, then, is nvidia-smi's
        env["CUDA_VISIBLE_DEVICES"] = device_for(plan, symbol)
    proc = subprocess.Popen(
        job_command(plan, symbol, fresh=force),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: a timeout kills it and its children
    )
    reader = threading.Thread(target=_relay, args=(proc, symbol, emit, outcome), daemon=True)
    reader.start()
    try:
        proc.wait(timeout=plan.timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
    reader.join(timeout=5)
    outcome.seconds = time.monotonic() - began
    if timed_out:
        outcome.state = JobState.TIMED_OUT
        outcome.exit_code = None
        outcome.message = f"timed out after {plan.timeout_s:g}s at epoch {outcome.last_epoch}"
    else:
        outcome.exit_code = proc.returncode
        outcome.state = JobState.SUCCEEDED if proc.returncode == 0 else JobState.FAILED
        if proc.returncode != 0 and not outcome.message:
            outcome.message = f"exited with code {proc.returncode}"
    return outcome


def _relay(proc: subprocess.Popen, symbol: str, emit: Emitter, outcome: JobOutcome) -> None:
    """Pass the job's JSON lines through, wrap anything else, and note what the outcome needs."""
    assert proc.stdout is not None
    for line in proc.stdout:
        text = line.rstrip("\n")
        if not text:
            continue
        try:
            event = json.loads(text) if text.startswith("{") else None
        except ValueError:
            event = None
        if not isinstance(event, dict):
            emit("log", symbol=symbol, line=text[:2000])
            continue
        emit(raw=text)
        kind = event.get("event")
        if kind == "epoch":
            outcome.last_epoch = int(event.get("epoch", 0))
        elif kind == "done":
            outcome.model_dir = event.get("model_dir")
            outcome.passed = event.get("passed")
            outcome.promoted = event.get("promoted")
            outcome.reasons = list(event.get("reasons", []))
        elif kind == "error":
            outcome.message = str(event.get("message", ""))


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _summary(plan: SchedulePlan, outcomes: Sequence[JobOutcome], seconds: float) -> dict[str, Any]:
    rows = [
        {
            "symbol": o.symbol,
            "state": o.state,
            "attempts": o.attempts,
            "exit_code": o.exit_code,
            "skipped": o.skipped,
            "last_epoch": o.last_epoch,
            "seconds": round(o.seconds, 3),
            "model_dir": o.model_dir,
            "passed": o.passed,
            "promoted": o.promoted,
            "why": "; ".join(o.reasons) if o.state == JobState.SUCCEEDED else o.message,
        }
        for o in outcomes
    ]
    return {
        "mode": plan.mode,
        "max_concurrent": plan.max_concurrent,
        "symbols": rows,
        "succeeded": sum(r["state"] == JobState.SUCCEEDED for r in rows),
        "failed": sum(r["state"] != JobState.SUCCEEDED for r in rows),
        "promoted": sum(bool(r["promoted"]) for r in rows),
        "seconds": round(seconds, 3),
        "finished_at": utc_now_iso(),
    }


def format_table(summary: dict[str, Any]) -> str:
    """The per-symbol table for a human: state, attempts, champion or why not."""
    header = f"{'SYMBOL':<12} {'STATE':<10} {'TRIES':>5} {'EPOCH':>5} {'CHAMPION':<8}  WHY / MODEL"
    lines = [header]
    for r in summary["symbols"]:
        champion = "yes" if r["promoted"] else ("no" if r["state"] == JobState.SUCCEEDED else "-")
        detail = r["why"] or (r["model_dir"] or "")
        if r["skipped"]:
            detail = "skipped: already succeeded" + (f" ({r['model_dir']})" if r["model_dir"] else "")
        lines.append(
            f"{r['symbol']:<12} {r['state']:<10} {r['attempts']:>5} {r['last_epoch']:>5} {champion:<8}  {detail}"
        )
    lines.append(
        f"{summary['succeeded']} succeeded, {summary['failed']} failed, {summary['promoted']} promoted "
        f"in {summary['seconds']:.1f}s ({summary['mode']})"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.scheduler", description="Train many symbols, resumably.")
    p.add_argument("--symbols", action="append", help="comma-separated pairs (repeatable); default: every feature file")
    p.add_argument("--family", default="lstm", help="the model family every job trains (default lstm)")
    p.add_argument("--features-dir", type=Path, default=Path("FEATURES"))
    p.add_argument("--out", type=Path, default=Path("artifacts"))
    p.add_argument("--mode", default="hybrid", help="sequential, parallel or hybrid (default)")
    p.add_argument("--max-concurrent", default="2", help="jobs at once in hybrid mode, or auto (sized to the GPUs)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per job (default 2700)")
    p.add_argument("--retries", type=int, default=DEFAULT_RETRIES)
    p.add_argument("--backoff", type=float, default=DEFAULT_BACKOFF_S, help="first retry delay, doubling")
    p.add_argument("--force", action="store_true", help="retrain symbols that already succeeded, from scratch")
    p.add_argument("--config", type=Path)
    p.add_argument("--lease", type=Path)
    for name in TRAIN_FLAGS:
        p.add_argument("--" + name.replace("_", "-"))
    return p


def plan_from_args(args: argparse.Namespace) -> SchedulePlan:
    symbols = [s.strip() for group in (args.symbols or []) for s in group.split(",") if s.strip()]
    if not symbols:
        symbols = sorted(p.stem for p in Path(args.features_dir).glob("*.parquet"))
        if not symbols:
            raise BadTrainingConfig(f"no symbols given and no feature files in {args.features_dir}")
    if args.retries < 0 or args.timeout <= 0:
        raise BadTrainingConfig("--retries must be >= 0 and --timeout > 0")
    sizing = _sizing(str(args.max_concurrent), len(dict.fromkeys(symbols)))
    train_args: list[str] = []
    for name in TRAIN_FLAGS:
        value = getattr(args, name)
        if value is not None:
            train_args += ["--" + name.replace("_", "-"), str(value)]
    return SchedulePlan(
        symbols=tuple(dict.fromkeys(check_symbol(s) for s in symbols)),
        out=args.out,
        features_dir=args.features_dir,
        mode=args.mode,
        max_concurrent=sizing.jobs,
        devices=sizing.devices,
        sizing=sizing.why,
        timeout_s=args.timeout,
        retries=args.retries,
        backoff_s=args.backoff,
        force=args.force,
        config=args.config,
        lease=args.lease,
        train_args=tuple(train_args),
        family=_family(args.family),
    )


def _sizing(value: str, symbols: int) -> Sizing:
    """``--max-concurrent``: a whole number at least 1 as given, or ``auto`` sized to this host."""
    if value.strip().lower() == "auto":
        return auto_sizing(symbols, find_gpus())
    try:
        jobs = int(value)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise BadTrainingConfig(f"--max-concurrent must be a whole number >= 1 or auto, not {value!r}")
    return Sizing(jobs, (), "")


def _family(name: str) -> str:
    """A registered family's name; anything else is bad input before a job starts."""
    from training.families import family_names

    if name not in family_names():
        raise BadTrainingConfig(f"unknown model family {name!r} (known: {', '.join(family_names())})")
    return name


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    emit = Emitter()
    try:
        summary = run_schedule(plan_from_args(args), emit=emit)
    except TrainingError as exc:
        emit("error", symbol=None, exit_code=exc.exit_code, message=str(exc))
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    print(format_table(summary), file=sys.stderr)
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
