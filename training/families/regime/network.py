"""The regime networks: a window of context days in, five regime logits and an 8-float embedding out.

``gru``: one GRU layer over the window, its last hidden state through a tanh layer to
the embedding. ``transformer``: a linear projection, one encoder layer (two heads, a
learned position per day), mean-pooled, then the same embedding layer. Either way the
logits are a linear map of the embedding, so the embedding is what the classifier sees.
"""

from __future__ import annotations

import torch
from torch import nn

from training.errors import BadTrainingConfig
from training.families.investment import REGIMES
from training.families.regime.rule import EMBEDDING_SIZE

MODEL_TYPES = ("gru", "transformer")


class RegimeNet(nn.Module):
    def __init__(self, model_type: str, inputs: int, hidden: int, window: int) -> None:
        super().__init__()
        if model_type not in MODEL_TYPES:
            raise BadTrainingConfig(f"unknown regime model type {model_type!r} (known: {', '.join(MODEL_TYPES)})")
        self.model_type = model_type
        if model_type == "gru":
            self.gru = nn.GRU(inputs, hidden, batch_first=True)
        else:
            self.project = nn.Linear(inputs, hidden)
            self.position = nn.Parameter(torch.zeros(1, window, hidden))
            layer = nn.TransformerEncoderLayer(hidden, 2, dim_feedforward=2 * hidden, dropout=0.1, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.embed = nn.Sequential(nn.Linear(hidden, EMBEDDING_SIZE), nn.Tanh())
        self.head = nn.Linear(EMBEDDING_SIZE, len(REGIMES))

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        if self.model_type == "gru":
            _, last = self.gru(x)
            pooled = last[-1]
        else:
            pooled = self.encoder(self.project(x) + self.position[:, : x.shape[1]]).mean(dim=1)
        return self.embed(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(x))
