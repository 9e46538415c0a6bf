"""One coin's share of the shared encoder: the sums its training rows add to the PCA.

The shared encoder (`training.families.gbm.encoder`) is a PCA over every coin's training
rows, each coin standardised on its own training part. What a coin adds to that fit is
its row count, the sum of its rows and the sum of their outer products, over *all* of its
feature columns. Any subset of names (the intersection the coins share) is then a
sub-block of those sums, so the moments can be computed where the coin's data is — a Batch
child that fetched the coin's candles — and only these few numbers (``d x d`` floats, 42 KB
at 73 features) travel to where the encoder is fitted, never the rows.

Saved as one ``.npz`` (numbers and the names as a fixed-width string array; no pickle),
checked on load: a file from the network that is not square, not finite or names its
columns twice is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from training.dataset import SymbolDataset
from training.errors import CheckpointMismatch
from training.families.artifacts import load_arrays, save_arrays


@dataclass(frozen=True)
class CoinMoments:
    """``rows`` training rows of ``symbol``: their sum and the sum of their outer products."""

    symbol: str
    feature_names: tuple[str, ...]
    rows: int
    total: np.ndarray
    products: np.ndarray

    def block(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(total, products) over ``names`` only, in that order; a name the coin lacks is a KeyError."""
        where = {n: i for i, n in enumerate(self.feature_names)}
        idx = np.array([where[n] for n in names], dtype=np.int64)
        return self.total[idx], self.products[np.ix_(idx, idx)]

    def save(self, path: Path) -> None:
        save_arrays(
            Path(path),
            {
                "symbol": np.array(self.symbol),
                "names": np.array(self.feature_names, dtype=str),
                "rows": np.array(self.rows, dtype=np.int64),
                "total": self.total,
                "products": self.products,
            },
        )

    @classmethod
    def load(cls, path: Path) -> "CoinMoments":
        """The moments saved at ``path``; a file of the wrong shape or with non-finite sums is refused."""
        arrays = load_arrays(Path(path))
        try:
            names = tuple(str(n) for n in arrays["names"].tolist())
            total = np.asarray(arrays["total"], dtype=np.float64)
            products = np.asarray(arrays["products"], dtype=np.float64)
            moments = cls(str(arrays["symbol"]), names, int(arrays["rows"]), total, products)
        except (KeyError, TypeError, ValueError):
            raise CheckpointMismatch(f"{path} is not a coin's encoder moments; fetch the coin again") from None
        d = len(names)
        if (
            total.shape != (d,)
            or products.shape != (d, d)
            or len(set(names)) != d
            or moments.rows < 0
            or not (np.isfinite(total).all() and np.isfinite(products).all())
        ):
            raise CheckpointMismatch(f"{path} holds malformed encoder moments; fetch the coin again")
        return moments


def coin_moments(dataset: SymbolDataset) -> CoinMoments:
    """The moments of ``dataset``'s training rows (``train_ends``: no validation or test row)."""
    train = np.asarray(dataset.features[dataset.train_ends], dtype=np.float64)
    return CoinMoments(dataset.symbol, tuple(dataset.feature_names), len(train), train.sum(axis=0), train.T @ train)
