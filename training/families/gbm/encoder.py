"""The shared encoder: one PCA fitted across every coin's training rows, pinned by its hash.

How coins with different feature sets share one encoder: the encoder is fitted over the
feature names *every* coin it serves has (the intersection, in the first coin's order),
and records them. A coin with a richer spec (73 features where another has 54) keeps
its extra columns out of the encoder; a coin missing one of the encoder's names is
refused by name (`EncoderMismatch`), so a head never sees a column in a different place.

Each coin's columns are standardised on that coin's own training part (`training.dataset`:
the scaler sees no validation or test row) before they meet the other coins, so one
coin's price scale cannot dominate the components. The fit then *streams*: it adds one
coin at a time into a ``d x d`` sum of products (the covariance of the stacked rows,
exactly what IncrementalPCA converges to, without holding the stack), so memory is one
coin's file plus ``d x d`` floats at 10 or 400 coins alike. Only training rows enter
(``train_ends``); validation and test rows of every coin stay unseen. Those per-coin sums
(`training.families.gbm.moments`) can be computed where a coin's data is, so Batch children
that fetch their own coins send the console a few numbers per coin, never the rows.

Saved as ``encoder.npz`` (mean, components; no pickle) and ``encoder.json`` (names,
counts, hash). The hash is the sha256 of the names, the mean and the components: every
head pins it, and `check_pinned` refuses a head trained against another encoder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from training.dataset import SymbolDataset
from training.errors import BadTrainingConfig, CheckpointMismatch, TrainingInputError
from training.families.artifacts import load_arrays, load_json, save_arrays, save_json
from training.families.gbm.moments import CoinMoments, coin_moments

ENCODER_FORMAT = "retrain-console/gbm-encoder/1"
ARRAYS_FILE = "encoder.npz"
META_FILE = "encoder.json"


class EncoderMismatch(TrainingInputError):
    """A coin or a head does not fit the shared encoder it is used with."""


@dataclass(frozen=True)
class SharedEncoder:
    """A fitted PCA: ``transform(rows) = (rows[:, names] - mean) @ components.T``."""

    feature_names: tuple[str, ...]
    mean: np.ndarray
    components: np.ndarray
    """(n_components, len(feature_names)), rows ordered by explained variance."""
    explained_variance_ratio: tuple[float, ...]
    coins: tuple[str, ...]
    rows: int
    """Training rows it was fitted on, across all coins."""

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    @property
    def hash(self) -> str:
        digest = hashlib.sha256()
        digest.update(json.dumps(list(self.feature_names)).encode())
        digest.update(np.ascontiguousarray(self.mean, dtype=np.float64).tobytes())
        digest.update(np.ascontiguousarray(self.components, dtype=np.float64).tobytes())
        return "sha256:" + digest.hexdigest()

    def columns_of(self, dataset: SymbolDataset) -> np.ndarray:
        """Indices of the encoder's names in ``dataset``'s columns; a missing name is refused."""
        where = {name: i for i, name in enumerate(dataset.feature_names)}
        missing = [n for n in self.feature_names if n not in where]
        if missing:
            raise EncoderMismatch(
                f"{dataset.symbol} lacks {len(missing)} of the shared encoder's features "
                f"({', '.join(missing[:3])}); refit the encoder over the coins it serves"
            )
        return np.array([where[n] for n in self.feature_names], dtype=np.int64)

    def transform(self, dataset: SymbolDataset) -> np.ndarray:
        """Every row of ``dataset`` (already scaled on its training part) as components, float32."""
        cols = self.columns_of(dataset)
        rows = np.asarray(dataset.features[:, cols], dtype=np.float64)
        return ((rows - self.mean) @ self.components.T).astype(np.float32)

    def save(self, folder: Path) -> tuple[str, ...]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_arrays(folder / ARRAYS_FILE, {"mean": self.mean, "components": self.components})
        save_json(
            folder / META_FILE,
            {
                "format": ENCODER_FORMAT,
                "type": "pca",
                "feature_names": list(self.feature_names),
                "n_components": self.n_components,
                "explained_variance_ratio": list(self.explained_variance_ratio),
                "coins": list(self.coins),
                "rows": self.rows,
                "hash": self.hash,
            },
        )
        return (ARRAYS_FILE, META_FILE)

    @classmethod
    def load(cls, folder: Path) -> "SharedEncoder":
        """The encoder saved in ``folder``; a file whose arrays disagree with its hash is refused."""
        folder = Path(folder)
        meta = load_json(folder / META_FILE)
        if not isinstance(meta, dict) or meta.get("format") != ENCODER_FORMAT:
            raise CheckpointMismatch(f"{folder / META_FILE} is not a {ENCODER_FORMAT} encoder")
        arrays = load_arrays(folder / ARRAYS_FILE)
        encoder = cls(
            feature_names=tuple(str(n) for n in meta["feature_names"]),
            mean=np.asarray(arrays["mean"], dtype=np.float64),
            components=np.asarray(arrays["components"], dtype=np.float64),
            explained_variance_ratio=tuple(float(v) for v in meta.get("explained_variance_ratio", ())),
            coins=tuple(str(c) for c in meta.get("coins", ())),
            rows=int(meta.get("rows", 0)),
        )
        if encoder.hash != meta.get("hash"):
            raise CheckpointMismatch(
                f"{folder} holds an encoder whose arrays hash to {encoder.hash[:19]}... but its record says "
                f"{str(meta.get('hash'))[:19]}...; download the encoder again"
            )
        return encoder


def common_names(name_sets: Iterable[Sequence[str]]) -> tuple[str, ...]:
    """Names every set has, in the first set's order."""
    sets = [tuple(s) for s in name_sets]
    if not sets:
        return ()
    shared = set(sets[0]).intersection(*map(set, sets[1:]))
    return tuple(n for n in sets[0] if n in shared)


def fit_encoder(datasets: Iterable[SymbolDataset], names: Sequence[str], n_components: int) -> SharedEncoder:
    """Stream ``datasets`` (one coin at a time; an iterator keeps one in memory) into a PCA over
    ``names``, from their training rows only."""
    return encoder_from_moments((coin_moments(ds) for ds in datasets), names, n_components)


def encoder_from_moments(moments: Iterable[CoinMoments], names: Sequence[str], n_components: int) -> SharedEncoder:
    """The PCA over ``names`` from each coin's training-row sums (`training.families.gbm.moments`),
    however they were computed: here from feature files, or by the Batch children that fetched
    the coins. The same sums give the same encoder and the same hash."""
    names = tuple(names)
    d = len(names)
    if d == 0:
        raise BadTrainingConfig("the coins share no feature name; the shared encoder has nothing to encode")
    total = np.zeros(d)
    products = np.zeros((d, d))
    rows = 0
    coins: list[str] = []
    for m in moments:
        missing = [n for n in names if n not in set(m.feature_names)]
        if missing:
            raise EncoderMismatch(
                f"{m.symbol} lacks {len(missing)} of the shared encoder's features "
                f"({', '.join(missing[:3])}); refit the encoder over the coins it serves"
            )
        coin_total, coin_products = m.block(names)
        total += coin_total
        products += coin_products
        rows += m.rows
        coins.append(m.symbol)
    if rows < 2:
        raise BadTrainingConfig("the shared encoder needs training rows from at least one coin")
    mean = total / rows
    cov = (products - rows * np.outer(mean, mean)) / (rows - 1)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][: max(1, min(int(n_components), d))]
    components = vectors[:, order].T
    # A fixed sign per component (largest loading positive), so the same data gives the same hash.
    signs = np.sign(components[np.arange(len(order)), np.abs(components).argmax(axis=1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    total_var = float(np.clip(values, 0, None).sum()) or 1.0
    ratio = tuple(float(max(v, 0.0) / total_var) for v in values[order])
    return SharedEncoder(names, mean, components, ratio, tuple(coins), rows)


def check_pinned(pinned: str, encoder: SharedEncoder, where: Any) -> None:
    """Refuse a head whose pinned encoder hash is not ``encoder``'s."""
    if pinned != encoder.hash:
        raise EncoderMismatch(
            f"{where} was trained against encoder {pinned[:19]}... but the shared encoder is "
            f"{encoder.hash[:19]}...; retrain the head or restore its encoder"
        )
