"""Training checkpoints kept off the host, so a lost spot instance costs at most one epoch.

The trainer writes ``<artifacts>/checkpoints/<SYMBOL>/last.pt`` after every epoch and
then ``last.json`` beside it (epoch, size, sha256; `training.train.record_checkpoint`).
While the backend follows the job it calls `CheckpointShelf.save_from_host` on each
epoch line: the checkpoint is copied here, checked against its record (a file replaced
mid-copy is caught and read again), and put in the artifact store under the run's prefix::

    checkpoints/<run id>/<SYMBOL>/epoch-0003.pt     the checkpoint (sha256 in its metadata)
    checkpoints/<run id>/<SYMBOL>/last.json         {"epoch", "key", "sha256", "size"}

The object goes up first and the pointer last, so a reader of ``last.json`` never finds a
checkpoint that is not whole. `restore_to_host` is the way back onto a replacement host:
pointer, object, sha256 checked here, put on the host atomically (temp name, rename), and
checked again there with ``sha256sum`` before the job is started.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remote.atomic import atomic_path
from remote.errors import ChecksumMismatch
from remote.storage import sha256_of

if TYPE_CHECKING:  # pragma: no cover
    from remote.ssh import SSHRunner
    from remote.storage import ArtifactStore

PREFIX = "checkpoints"
RECORD = "last.json"
CHECKPOINT = "last.pt"
_COPY_TRIES = 3


class CheckpointShelf:
    """One run's per-symbol checkpoints in the artifact store."""

    def __init__(self, store: "ArtifactStore", run_id: str, staging: Path, log: logging.Logger) -> None:
        self.store = store
        self.run_id = run_id
        self.staging = Path(staging)
        """Where copies pass through on this machine (the run directory)."""
        self.log = log
        self._sweep()
        self.shelved: dict[str, int] = {}
        """The epoch of the newest checkpoint stored per symbol, as far as this shelf knows."""
        self._bucket_ready = False

    def pointer_key(self, symbol: str) -> str:
        return f"{PREFIX}/{self.run_id}/{symbol}/{RECORD}"

    def object_key(self, symbol: str, epoch: int) -> str:
        return f"{PREFIX}/{self.run_id}/{symbol}/epoch-{epoch:04d}.pt"

    # --- off the host --------------------------------------------------------------

    def save_from_host(self, runner: "SSHRunner", artifacts: str, symbol: str) -> int | None:
        """Copy the symbol's newest checkpoint off the host into the store, if it is newer
        than the one stored; return the epoch now stored (None when there is none yet)."""
        remote_dir = f"{artifacts}/checkpoints/{symbol}"
        for _ in range(_COPY_TRIES):
            record = _parse(runner.read_text(f"{remote_dir}/{RECORD}"))
            if record is None:
                return self.shelved.get(symbol)
            epoch = int(record["epoch"])
            if epoch <= self.shelved.get(symbol, 0):
                return epoch
            local = self._local(symbol)
            runner.get(f"{remote_dir}/{CHECKPOINT}", local)
            if sha256_of(local) != record["sha256"]:
                # The next epoch replaced the file between the record and the copy: read both again.
                continue
            self._ensure_bucket()
            key = self.object_key(symbol, epoch)
            self.store.put_file(key, local, record["sha256"])
            pointer = {"epoch": epoch, "key": key, "sha256": record["sha256"], "size": local.stat().st_size}
            self.store.put_bytes(self.pointer_key(symbol), json.dumps(pointer).encode())
            self.shelved[symbol] = epoch
            local.unlink(missing_ok=True)
            return epoch
        self._local(symbol).unlink(missing_ok=True)
        self.log.warning("%s: the checkpoint kept changing while it was copied; trying again at the next epoch", symbol)
        return self.shelved.get(symbol)

    def forget(self, symbols: list[str]) -> None:
        """Point the symbols at no checkpoint (a ``--force`` run starts over, here too)."""
        self._ensure_bucket()
        for symbol in symbols:
            self.store.put_bytes(self.pointer_key(symbol), json.dumps({"epoch": 0}).encode())
            self.shelved[symbol] = 0

    # --- back onto a host ------------------------------------------------------------

    def restore_to_host(self, runner: "SSHRunner", artifacts: str, symbols: list[str]) -> dict[str, int]:
        """Put each symbol's stored checkpoint on the host where the trainer resumes from it;
        the epochs restored, by symbol (symbols with none stored are left out)."""
        restored: dict[str, int] = {}
        for symbol in symbols:
            raw = self.store.get_bytes(self.pointer_key(symbol))  # sha256-checked against its metadata
            pointer = _parse(raw)
            if pointer is None or not pointer.get("key"):
                continue
            local = self._local(symbol)
            with atomic_path(local) as tmp:
                recorded = self.store.get_file(str(pointer["key"]), tmp)
            actual = sha256_of(local)
            if actual != pointer["sha256"] or (recorded is not None and recorded != actual):
                local.unlink(missing_ok=True)
                raise ChecksumMismatch(
                    f"stored checkpoint {pointer['key']} does not match its sha256; refusing to resume {symbol} from it"
                )
            remote_dir = f"{artifacts}/checkpoints/{symbol}"
            runner.run(["mkdir", "-p", remote_dir], timeout_s=30)
            runner.put(local, f"{remote_dir}/{CHECKPOINT}")
            on_host = runner.run(["sha256sum", f"{remote_dir}/{CHECKPOINT}"], timeout_s=60).output.split()
            if not on_host or on_host[0] != actual:
                raise ChecksumMismatch(
                    f"the checkpoint of {symbol} arrived damaged on {runner.target.where}; run the train step again"
                )
            epoch = int(pointer["epoch"])
            record = {"file": CHECKPOINT, "epoch": epoch, "size": local.stat().st_size, "sha256": actual}
            runner.write_text(f"{remote_dir}/{RECORD}", json.dumps(record) + "\n")
            local.unlink(missing_ok=True)
            self.shelved[symbol] = epoch
            restored[symbol] = epoch
            self.log.info(
                "restored %s's checkpoint of epoch %d to %s (sha256 %s... checked there)",
                symbol,
                epoch,
                runner.target.where,
                actual[:12],
            )
        return restored

    # --- pieces ------------------------------------------------------------------------

    def _local(self, symbol: str) -> Path:
        # Written only through temporary names (runner.get, atomic_path), so a copy here is
        # whole or absent; removed once it is stored or on the host.
        self.staging.mkdir(parents=True, exist_ok=True)
        return self.staging / f"{symbol}.pt"

    def _sweep(self) -> None:
        # Temporary names a killed console left behind (only one process drives a run).
        if self.staging.is_dir():
            for leftover in self.staging.glob(".*"):
                leftover.unlink(missing_ok=True)

    def _ensure_bucket(self) -> None:
        if not self._bucket_ready:
            self.store.ensure_bucket()
            self._bucket_ready = True


def _parse(raw: str | bytes | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("epoch"), int) or data["epoch"] < 1:
        return None
    return data
