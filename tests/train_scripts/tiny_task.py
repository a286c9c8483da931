"""A tiny regression task for trainer tests: an MLP with dropout on deterministic data."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset


class TinyRegression(Dataset):
    """``y = sin(x @ w)`` on fixed random inputs; optional noise augmentation per access.

    Args:
        n: number of samples.
        dim: input features.
        augment: std of Gaussian noise added to x on every access, drawn from the global torch
            RNG (so resume must restore it).
    """

    def __init__(self, n: int = 256, dim: int = 8, augment: float = 0.0):
        g = torch.Generator().manual_seed(1234)
        self.x = torch.randn(n, dim, generator=g)
        self.y = torch.sin(self.x @ torch.randn(dim, 1, generator=g))
        self.augment = augment

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x[i]
        if self.augment:
            x = x + self.augment * torch.randn_like(x)
        return x, self.y[i]


def tiny_mlp(dim: int = 8, hidden: int = 32, dropout: float = 0.1, seed: int = 0) -> nn.Module:
    """A 3-layer MLP with dropout, initialised from ``seed``."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, 1))


def mse_objective(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """Mean squared error, plus the mean absolute error as an extra logged scalar."""
    x, y = batch
    pred = model(x)
    return {"loss": F.mse_loss(pred, y), "mae": (pred - y).abs().mean()}
