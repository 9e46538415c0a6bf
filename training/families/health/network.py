"""The health networks: ten scaled asset features in, a 16-float latent, the features back out.

``autoencoder``: 10 -> 32 -> 16 -> 32 -> 10 with GELU, trained on the mean squared
reconstruction error. ``vae``: the same shape with a mean and a log-variance at the
bottleneck, trained on reconstruction plus `KL_WEIGHT` times the KL divergence to a
standard normal; its latent (for the read-out and the output) is the mean.
"""

from __future__ import annotations

import torch
from torch import nn

from training.errors import BadTrainingConfig
from training.families.health.score import LATENT_SIZE

MODEL_TYPES = ("autoencoder", "vae")
KL_WEIGHT = 0.01


class HealthNet(nn.Module):
    def __init__(self, model_type: str, inputs: int, hidden: int = 32) -> None:
        super().__init__()
        if model_type not in MODEL_TYPES:
            raise BadTrainingConfig(f"unknown health model type {model_type!r} (known: {', '.join(MODEL_TYPES)})")
        self.model_type = model_type
        out = 2 * LATENT_SIZE if model_type == "vae" else LATENT_SIZE
        self.encoder = nn.Sequential(nn.Linear(inputs, hidden), nn.GELU(), nn.Linear(hidden, out))
        self.decoder = nn.Sequential(nn.Linear(LATENT_SIZE, hidden), nn.GELU(), nn.Linear(hidden, inputs))

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[:, :LATENT_SIZE]

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        code = self.encoder(x)
        if self.model_type == "vae":
            mean, log_var = code[:, :LATENT_SIZE], code[:, LATENT_SIZE:].clamp(-8, 8)
            z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var) if self.training else mean
            kl = -0.5 * torch.mean(torch.sum(1 + log_var - mean.pow(2) - log_var.exp(), dim=1))
            return nn.functional.mse_loss(self.decoder(z).float(), x.float()) + KL_WEIGHT * kl
        return nn.functional.mse_loss(self.decoder(code).float(), x.float())

    def reconstruction_error(self, x: torch.Tensor) -> torch.Tensor:
        """Per-row mean squared error of the reconstruction from the latent (the mean, for a VAE)."""
        return ((self.decoder(self.latent(x)) - x) ** 2).mean(dim=1)
