"""The per-coin direction classifier: an LSTM over a window of scaled features."""

from __future__ import annotations

import torch
from torch import nn


class DirectionLSTM(nn.Module):
    """LSTM -> last hidden state -> one logit for "the close is higher ``horizon`` bars ahead".

    ``input_size`` is always the feature count of the data it is trained on, never a constant.
    """

    def __init__(self, input_size: int, hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.lstm = nn.LSTM(
            input_size=self.input_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            batch_first=True,
            # PyTorch warns (and ignores it) when dropout is set on a single layer.
            dropout=float(dropout) if self.num_layers > 1 else 0.0,
        )
        self.head = nn.Linear(self.hidden_size, 1)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Logits, shape (batch,), for windows shaped (batch, window, input_size)."""
        out, _ = self.lstm(windows)
        return self.head(out[:, -1, :]).squeeze(-1)

    def shape(self) -> dict[str, int]:
        """The constructor arguments that fix the state dict's shapes."""
        return {"input_size": self.input_size, "hidden_size": self.hidden_size, "num_layers": self.num_layers}
