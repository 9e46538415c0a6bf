"""The epoch loop: data held on the device, batches gathered by index there, a checkpoint per epoch.

The whole scaled feature matrix, the labels and the sample end rows are moved to the
device once; each batch is a random slice of end rows turned into windows by
`training.dataset.gather_windows` on the device, so there is no per-batch copy from host
memory. On CUDA the forward pass runs under ``torch.autocast`` (bf16 where supported,
else fp16 with a gradient scaler).

After every epoch the full training state goes to ``checkpoint_path`` (atomically), so a
job killed mid-run (spot interruption, timeout) resumes from its last finished epoch.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from training.atomic import atomic_path
from training.dataset import SymbolDataset, gather_windows
from training.errors import BadTrainingConfig, CheckpointMismatch
from training.families.lstm.config import TrainConfig
from training.families.lstm.graphed import GraphedStep, graph_wanted
from training.families.lstm.network import DirectionLSTM

EVAL_BATCH = 4096


@dataclass
class EpochRecord:
    """What one finished epoch reports (also a progress line and a training_log.json entry)."""

    epoch: int
    loss: float
    val_loss: float
    val_accuracy: float
    seconds: float
    improved: bool


@dataclass
class FitResult:
    """The best model (by validation loss) and how it got there."""

    model: DirectionLSTM
    history: list[EpochRecord]
    best_epoch: int
    stopped_early: bool
    resumed_from_epoch: int
    device: str
    precision: str
    runner: "EpochRunner"
    data: "DeviceData"

    def test_probabilities(self) -> np.ndarray:
        """P(up) of the best model on the test part, as a host array."""
        return self.runner.probabilities(self.data.test_ends)

    def validation_probabilities(self) -> np.ndarray:
        """P(up) of the best model on the validation part, as a host array."""
        return self.runner.probabilities(self.data.val_ends)


def pick_device(name: str) -> torch.device:
    """``auto`` means CUDA when present; asking for CUDA where there is none is bad input."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadTrainingConfig("device=cuda but CUDA is not available on this host")
    if name not in ("cuda", "cpu"):
        raise BadTrainingConfig(f"device must be auto, cuda or cpu, not {name!r}")
    return torch.device(name)


def pick_precision(name: str, device: torch.device) -> str:
    """The autocast dtype name in use: ``bf16``, ``fp16`` or ``fp32`` (CPU trains in fp32 under auto)."""
    if name == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if name not in ("bf16", "fp16", "fp32"):
        raise BadTrainingConfig(f"precision must be auto, bf16, fp16 or fp32, not {name!r}")
    return name


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceData:
    """The dataset's arrays, moved to the device once."""

    def __init__(self, dataset: SymbolDataset, device: torch.device) -> None:
        def on_device(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array)).to(device)

        self.window = dataset.spec.window
        self.features = on_device(dataset.features)
        self.labels = on_device(dataset.labels)
        self.train_ends = on_device(dataset.train_ends)
        self.val_ends = on_device(dataset.val_ends)
        self.test_ends = on_device(dataset.test_ends)

    @classmethod
    def from_tensors(
        cls, features: torch.Tensor, labels: torch.Tensor, train_ends: torch.Tensor, window: int
    ) -> "DeviceData":
        """Device data built directly from tensors (benchmarks: no SymbolDataset, no host copy)."""
        data = cls.__new__(cls)
        data.window = window
        data.features, data.labels = features, labels
        data.train_ends = data.val_ends = data.test_ends = train_ends
        return data

    def batch(self, ends: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return gather_windows(self.features, ends, self.window), self.labels[ends]


class EpochRunner:
    """One model, one optimizer, one precision: trains an epoch or scores a part."""

    def __init__(self, model: nn.Module, data: DeviceData, config: TrainConfig, device: torch.device, precision: str):
        self.model = model
        self.data = data
        self.config = config
        self.device = device
        self.precision = precision
        graphed = graph_wanted(config.cuda_graph, device, precision)
        # The fused CUDA Adam is one kernel launch per step instead of several per parameter;
        # a recorded step needs it capturable (its step count on the device; same update).
        self.optimizer = torch.optim.Adam(
            model.parameters(),
            lr=config.learning_rate,
            weight_decay=config.weight_decay,
            fused=(device.type == "cuda"),
            capturable=graphed,
        )
        # fp16 needs loss scaling to keep small gradients; bf16 and fp32 do not.
        self.grad_scaler = torch.amp.GradScaler(device.type, enabled=(precision == "fp16"))
        self.loss_fn = nn.BCEWithLogitsLoss()
        self.graphed = GraphedStep(self._step, self._zero_grad, config.batch_size, device) if graphed else None

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        # A weight cache filled while a graph records would be stale on every replay.
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision], cache_enabled=self.graphed is None)

    def _zero_grad(self, to_none: bool) -> None:
        self.optimizer.zero_grad(set_to_none=to_none)

    def _step(self, ends: torch.Tensor) -> torch.Tensor:
        """One update on the samples ending at ``ends`` (gradients already cleared); the loss."""
        x, y = self.data.batch(ends)
        with self._autocast():
            logits = self.model(x)
        loss = self.loss_fn(logits.float(), y)
        self.grad_scaler.scale(loss).backward()
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        return loss

    def train_epoch(self, epoch: int) -> float:
        """One pass over the training part in a shuffled order fixed by (seed, epoch); mean loss."""
        self.model.train()
        stride = max(1, int(self.config.sample_stride))
        ends = self.data.train_ends[(epoch - 1) % stride :: stride]
        generator = torch.Generator(device=self.device).manual_seed(self.config.seed + epoch)
        order = ends[torch.randperm(len(ends), generator=generator, device=self.device)]
        total = torch.zeros((), device=self.device)
        batch_size = self.config.batch_size
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            if self.graphed is not None:
                loss = self.graphed(batch)
            else:
                self._zero_grad(True)
                loss = self._step(batch)
            # Accumulate on the device: a .item() per batch would stall the GPU queue.
            total += loss.detach() * len(batch)
        return float(total.item() / max(1, len(order)))

    @torch.no_grad()
    def probabilities(self, ends: torch.Tensor) -> np.ndarray:
        """P(up) for the samples ending at ``ends``, as a host NumPy array."""
        self.model.eval()
        out = []
        for start in range(0, len(ends), EVAL_BATCH):
            x, _ = self.data.batch(ends[start : start + EVAL_BATCH])
            with self._autocast():
                out.append(torch.sigmoid(self.model(x).float()))
        if not out:
            return np.zeros(0)
        return torch.cat(out).cpu().numpy().astype(np.float64)


def fit(
    dataset: SymbolDataset,
    config: TrainConfig,
    checkpoint_path: Path,
    *,
    on_epoch: Callable[[EpochRecord], None] = lambda record: None,
) -> FitResult:
    """Train with early stopping on validation loss, resuming from ``checkpoint_path`` if it exists."""
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    precision = pick_precision(config.precision, device)
    model = DirectionLSTM(dataset.input_size, config.hidden_size, config.num_layers, config.dropout).to(device)
    data = DeviceData(dataset, device)
    runner = EpochRunner(model, data, config, device, precision)
    labels_val = dataset.labels[dataset.val_ends].astype(np.float64)

    state = _resume(checkpoint_path, dataset, model, runner, device)
    start_epoch = state["epoch"]
    history = [EpochRecord(**h) for h in state["history"]]
    best_val, best_epoch, stale = state["best_val_loss"], state["best_epoch"], state["stale"]
    best_state = state["best_state"] or _cpu_state(model)
    stopped_early = stale >= config.patience

    epoch = start_epoch
    while epoch < config.epochs and not stopped_early:
        epoch += 1
        began = time.perf_counter()
        loss = runner.train_epoch(epoch)
        p_val = runner.probabilities(data.val_ends)
        val_loss = _log_loss(labels_val, p_val)
        improved = val_loss < best_val - 1e-6
        if improved:
            best_val, best_epoch, stale, best_state = val_loss, epoch, 0, _cpu_state(model)
        else:
            stale += 1
        record = EpochRecord(
            epoch=epoch,
            loss=loss,
            val_loss=val_loss,
            val_accuracy=float(((p_val > 0.5) == (labels_val == 1)).mean()),
            seconds=time.perf_counter() - began,
            improved=improved,
        )
        history.append(record)
        stopped_early = stale >= config.patience
        _save_checkpoint(
            checkpoint_path,
            dataset=dataset,
            model=model,
            runner=runner,
            epoch=epoch,
            history=history,
            best=(best_val, best_epoch, stale, best_state),
            config=config,
        )
        on_epoch(record)

    model.load_state_dict(best_state)
    return FitResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        resumed_from_epoch=start_epoch,
        device=str(device),
        precision=precision,
        runner=runner,
        data=data,
    )


def _resume(
    path: Path, dataset: SymbolDataset, model: DirectionLSTM, runner: EpochRunner, device: torch.device
) -> dict[str, Any]:
    fresh = {"epoch": 0, "history": [], "best_val_loss": math.inf, "best_epoch": 0, "stale": 0, "best_state": None}
    path = Path(path)
    if not path.exists():
        return fresh
    try:
        # Weights only: a checkpoint restored from the artifact store crossed a network, and
        # unpickling it must never run code (a tampered file is refused, not executed).
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: refuse rather than silently start over
        raise CheckpointMismatch(
            f"checkpoint {path} is unreadable ({type(exc).__name__}); delete it to start this symbol over"
        ) from exc
    if (
        ckpt.get("feature_hash") != dataset.feature_hash
        or tuple(ckpt.get("feature_names", ())) != dataset.feature_names
    ):
        raise CheckpointMismatch(
            f"checkpoint {path} was trained on feature set {ckpt.get('feature_hash')} but the data is "
            f"{dataset.feature_hash}; delete the checkpoint (or rerun with --force) to start over"
        )
    if ckpt.get("model_shape") != model.shape() or ckpt.get("window") != dataset.spec.window:
        raise CheckpointMismatch(
            f"checkpoint {path} has model shape {ckpt.get('model_shape')} / window {ckpt.get('window')}, "
            f"this run wants {model.shape()} / {dataset.spec.window}; delete it (or --force) to start over"
        )
    model.load_state_dict(ckpt["model_state"])
    runner.optimizer.load_state_dict(ckpt["optimizer_state"])
    runner.grad_scaler.load_state_dict(ckpt["grad_scaler_state"])
    return {
        "epoch": int(ckpt["epoch"]),
        "history": list(ckpt["history"]),
        "best_val_loss": float(ckpt["best_val_loss"]),
        "best_epoch": int(ckpt["best_epoch"]),
        "stale": int(ckpt["stale"]),
        "best_state": ckpt["best_state"],
    }


def _save_checkpoint(
    path: Path,
    *,
    dataset: SymbolDataset,
    model: DirectionLSTM,
    runner: EpochRunner,
    epoch: int,
    history: list[EpochRecord],
    best: tuple[float, int, int, Any],
    config: TrainConfig,
) -> None:
    best_val, best_epoch, stale, best_state = best
    payload = {
        "epoch": epoch,
        "model_state": _cpu_state(model),
        "optimizer_state": runner.optimizer.state_dict(),
        "grad_scaler_state": runner.grad_scaler.state_dict(),
        "best_val_loss": best_val,
        "best_epoch": best_epoch,
        "stale": stale,
        "best_state": best_state,
        "history": [vars(h) for h in history],
        "feature_hash": dataset.feature_hash,
        "feature_names": list(dataset.feature_names),
        "model_shape": model.shape(),
        "window": dataset.spec.window,
        "config": config.to_dict(),
    }
    atomic_torch_save(payload, Path(path))


def atomic_torch_save(payload: Any, path: Path) -> None:
    """``torch.save`` to a temp file beside ``path``, then rename: a reader never sees half a file."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()) if len(y) else math.inf
