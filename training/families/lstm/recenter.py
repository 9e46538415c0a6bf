"""Re-centre a fitted direction model's output on the validation part.

A model can rank well (a high AUC) and still call one side far too often: its logits sit
shifted, say, because the training part trended. Its 0.5 cut then decides little. The fix
is one number fitted on the validation part, never on the test part or the holdout that
judge the model: the shift ``b`` of the output logit that maximises the validation part's
log-likelihood of the labels under ``sigmoid(logit + b)``. It moves no ranking (the AUC is
unchanged), only where "up" begins; a model with nothing to learn stays without an edge.

The shift goes into the output layer's bias, so the saved model, the dry run and the
runtime all compute the re-centred probability with no extra step to forget.
"""

from __future__ import annotations

import numpy as np

MAX_SHIFT = 2.0
"""A larger shift says the validation part is unlike training, not that the cut is off: capped."""


def logit_shift(p_up: np.ndarray, up: np.ndarray, *, iterations: int = 50) -> float:
    """The logit shift that maximises the log-likelihood of ``up`` under P(up) = sigmoid(logit(p_up) + shift).

    Newton's method on a concave one-dimensional problem; 0.0 for no samples or one class only.
    """
    y = np.asarray(up, dtype=np.float64)
    if len(y) == 0 or y.min() == y.max():
        return 0.0
    p = np.clip(np.asarray(p_up, dtype=np.float64), 1e-6, 1 - 1e-6)
    z = np.log(p / (1 - p))
    shift = 0.0
    for _ in range(iterations):
        s = 1.0 / (1.0 + np.exp(-(z + shift)))
        gradient, curvature = float((y - s).mean()), float((s * (1 - s)).mean())
        if curvature <= 1e-12:
            break
        step = gradient / curvature
        shift = float(np.clip(shift + step, -MAX_SHIFT, MAX_SHIFT))
        if abs(step) < 1e-7:
            break
    return shift


def shift_output(model: object, shift: float) -> None:
    """Add ``shift`` to the model's output logit (the bias of its ``head`` layer), in place."""
    import torch

    with torch.no_grad():
        model.head.bias.add_(float(shift))  # type: ignore[attr-defined]
