"""The train step recorded once as a CUDA graph and replayed for every full batch.

An epoch of the LSTM at the AWS profile's size is launch-bound on a large GPU: each batch is
a few hundred small kernels (gather, two LSTM layers forward and back, the loss, Adam), and
the host spends longer queueing them than the GPU spends running them. A CUDA graph records
that sequence once and replays it with one launch, so the GPU runs back to back.

What is learned does not change: the replayed step is the same gather, forward, loss,
backward and Adam update as the eager step, on the same batches in the same order. The only
differences are mechanical ones a graph needs:

- the batch's sample indices are copied into one fixed buffer that the recorded gather reads
  (so only full batches replay; an epoch's last, shorter batch runs eagerly);
- Adam is built ``capturable`` (its step count lives on the device), which computes the
  same update;
- autocast runs without its weight cache (a cache filled during recording would be stale);
- the first `WARMUP_STEPS` batches run eagerly on a side stream before recording, as CUDA
  graphs require (cuDNN and cuBLAS allocate their workspaces there). They are real training
  steps on real batches, so none is wasted or repeated.

fp16 is not recorded: its loss scaler decides per step whether to skip the update, on the
host. bf16 (every GPU from Ampere on) and fp32 are.
"""

from __future__ import annotations

from typing import Callable

import torch

from training.families.lstm.config import CUDA_GRAPH_CHOICES

WARMUP_STEPS = 3


def graph_wanted(choice: str, device: torch.device, precision: str) -> bool:
    """True when the train step should be recorded: ``auto`` on CUDA in bf16 or fp32."""
    if choice not in CUDA_GRAPH_CHOICES:
        raise ValueError(f"cuda_graph must be one of {', '.join(CUDA_GRAPH_CHOICES)}, not {choice!r}")
    return choice == "auto" and device.type == "cuda" and precision != "fp16"


class GraphedStep:
    """Runs ``step(ends) -> loss`` for full batches of ``batch_size`` indices as one graph replay.

    ``step`` must do the whole update (forward, loss, backward, optimizer step) reading its
    batch from ``ends`` and return the loss tensor; gradients must be cleared before it is
    called the eager way. The returned loss is the graph's output buffer: use it (e.g. add it
    to a device-side total) before the next call overwrites it.
    """

    def __init__(
        self,
        step: Callable[[torch.Tensor], torch.Tensor],
        zero_grad: Callable[[bool], None],
        batch_size: int,
        device: torch.device,
    ) -> None:
        self._step = step
        self._zero_grad = zero_grad
        self.batch_size = batch_size
        self.ends = torch.zeros(batch_size, dtype=torch.long, device=device)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._loss: torch.Tensor | None = None
        self._side = torch.cuda.Stream(device=device)
        self.warmed = 0

    @property
    def recorded(self) -> bool:
        return self._graph is not None

    def __call__(self, ends: torch.Tensor) -> torch.Tensor:
        if len(ends) != self.batch_size:
            return self.eager(ends)
        self.ends.copy_(ends)
        if self._graph is None and self.warmed < WARMUP_STEPS:
            return self._warm()
        if self._graph is None:
            self._record()
        assert self._graph is not None and self._loss is not None
        self._graph.replay()
        return self._loss

    def eager(self, ends: torch.Tensor) -> torch.Tensor:
        """One step without the graph (a short batch). Once recorded, gradients are zeroed in
        place: the graph's backward writes into those very tensors."""
        self._zero_grad(not self.recorded)
        return self._step(ends)

    def _warm(self) -> torch.Tensor:
        self._side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self._side):
            self._zero_grad(True)
            loss = self._step(self.ends).detach().clone()
        torch.cuda.current_stream().wait_stream(self._side)
        self.warmed += 1
        return loss

    def _record(self) -> None:
        # Gradients set to None so the recorded backward allocates them in the graph's pool
        # and writes (not accumulates) them on every replay.
        self._zero_grad(True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._loss = self._step(self.ends)
        self._graph = graph
