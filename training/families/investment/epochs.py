"""The epoch loop both investment models train with: resumable per epoch, early stopping,
CUDA with mixed precision where present.

After every epoch the whole training state (weights, optimizer, best weights so far,
patience count, history) goes to the checkpoint in the job's work folder, atomically,
so a job killed mid-run resumes from its last finished epoch. It is read back with
``weights_only=True``: a checkpoint cannot run code either.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from training.atomic import atomic_path
from training.errors import BadTrainingConfig, CheckpointMismatch

LossFn = Callable[[nn.Module, Sequence[torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class EpochSettings:
    epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    seed: int
    device: str = "auto"


@dataclass
class EpochOutcome:
    """The best weights (by validation loss) loaded into the model, and how it got there."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    device: str = "cpu"
    precision: str = "fp32"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadTrainingConfig("device=cuda but CUDA is not available on this host")
    if name not in ("cuda", "cpu"):
        raise BadTrainingConfig(f"device must be auto, cuda or cpu, not {name!r}")
    return torch.device(name)


def run_epochs(
    model: nn.Module,
    loss_fn: LossFn,
    train: Sequence[torch.Tensor],
    val: Sequence[torch.Tensor],
    settings: EpochSettings,
    checkpoint: Path,
    on_epoch: Callable[[dict[str, float]], None] = lambda record: None,
) -> EpochOutcome:
    """Train ``model`` on ``train`` (tensors sharing their first dimension), stop when the
    validation loss has not improved for ``patience`` epochs; resume from ``checkpoint``."""
    device = pick_device(settings.device)
    precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if device.type == "cuda" else "fp32"
    if device.type == "cpu":
        # These networks are tiny: one thread is fastest, and more only contend on a busy host.
        torch.set_num_threads(1)
    torch.manual_seed(settings.seed)
    model.to(device)
    train = [t.to(device) for t in train]
    val = [t.to(device) for t in val]
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    outcome = EpochOutcome(device=str(device), precision=precision)
    best_state = copy.deepcopy(model.state_dict())
    best_val, bad, start = float("inf"), 0, 1
    if checkpoint.exists():
        try:
            saved = torch.load(checkpoint, map_location=device, weights_only=True)
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            best_state = saved["best"]
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint means the same
            raise CheckpointMismatch(
                f"{checkpoint} cannot resume this model ({type(exc).__name__}); rerun with fresh"
            ) from None
        best_val, bad = float(saved["best_val"]), int(saved["bad"])
        outcome.history = [dict(h) for h in saved["history"]]
        outcome.best_epoch, outcome.stopped_early = int(saved["best_epoch"]), bool(saved["stopped"])
        start = outcome.resumed_from_epoch = int(saved["epoch"]) + 1

    def autocast() -> Any:
        if precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)

    rows = len(train[0])
    for epoch in range(start, settings.epochs + 1):
        if outcome.stopped_early:
            break
        began = time.time()
        model.train()
        order = torch.randperm(rows, generator=torch.Generator().manual_seed(settings.seed + epoch)).to(device)
        total = torch.zeros((), device=device)
        for first in range(0, rows, settings.batch_size):
            pick = order[first : first + settings.batch_size]
            with autocast():
                loss = loss_fn(model, [t[pick] for t in train])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss.float()).backward()
            scaler.step(optimizer)
            scaler.update()
            total += loss.detach().float() * len(pick)
        model.eval()
        with torch.no_grad(), autocast():
            val_loss = float(loss_fn(model, val).float().item())
        record = {
            "epoch": float(epoch),
            "loss": float(total.item() / max(1, rows)),
            "val_loss": val_loss,
            "seconds": round(time.time() - began, 4),
        }
        if val_loss < best_val - 1e-6:
            best_val, bad, outcome.best_epoch = val_loss, 0, epoch
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
        outcome.stopped_early = bad >= settings.patience
        outcome.history.append(record)
        _save(checkpoint, model, optimizer, best_state, best_val, bad, epoch, outcome)
        on_epoch(record)
    model.load_state_dict(best_state)
    model.eval()
    return outcome


def _save(
    checkpoint: Path,
    model: nn.Module,
    optimizer: Any,
    best_state: Any,
    best_val: float,
    bad: int,
    epoch: int,
    outcome: EpochOutcome,
) -> None:
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "best": best_state,
        "best_val": best_val,
        "bad": bad,
        "epoch": epoch,
        "best_epoch": outcome.best_epoch,
        "stopped": outcome.stopped_early,
        "history": outcome.history,
    }
    with atomic_path(checkpoint) as tmp:
        torch.save(state, tmp)
