"""One symbol's training data: the feature file turned into labelled windows and a purged split.

Nothing here copies the data once per window. The scaled feature matrix is held once
(``features``, rows x features); a sample is named by the row its window *ends* on, and
`gather_windows` builds a batch of windows by index from those end rows (on whatever
device the matrix lives). ``windows_view`` gives the same windows as a zero-copy strided
view for NumPy callers.

Labels: sample ``t`` is "up" (1) when ``close[t + horizon] > close[t]``, else 0, and ``t`` is
a sample only when its window and its label's ``horizon`` bars are consecutive in time
(`training.features.gaps.time_contiguous`): nothing is labelled across a hole.

Split: chronological train | gap | validation | gap | test [| holdout], where each gap (the purge)
is ``horizon + longest_feature_window`` samples, so no validation or test window sees a
row whose features or label overlap the previous part. The scaler is fitted on the rows
the training windows cover, and on nothing later. The holdout (``holdout_fraction`` of the
newest samples) is in no part: promotion judges the test part, the gate only bars after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from training.errors import FeatureFileProblem, FeatureHashMismatch, NonFiniteValues, NotEnoughData
from training.features.gaps import time_contiguous
from training.features.io import FeatureFileError, feature_hash, read_feature_file

MIN_SAMPLES_PER_PART = 16
"""Fewer validation or test samples than this make every metric noise."""


@dataclass(frozen=True)
class WindowSpec:
    """How samples are cut from a feature file."""

    window: int = 60
    horizon: int = 1
    """Bars ahead whose close decides the label."""
    longest_feature_window: int = 200
    """The longest look-back of any feature in the spec (it sets the purge gap)."""
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    holdout_fraction: float = 0.0
    """The newest share of samples reserved for the gate: never trained, validated or tested
    on, so the dry run judges bars promotion never saw (`runtime_checks.dryrun`)."""

    @property
    def purge_gap(self) -> int:
        """Samples dropped between parts: the label horizon plus the longest feature window."""
        return self.horizon + self.longest_feature_window

    def validate(self) -> None:
        if self.window < 1 or self.horizon < 1 or self.longest_feature_window < 0:
            raise NotEnoughData(
                f"window ({self.window}) and horizon ({self.horizon}) must be at least 1 "
                f"and longest_feature_window ({self.longest_feature_window}) at least 0"
            )
        if not (
            0 < self.val_fraction < 1 and 0 < self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1
        ):
            raise NotEnoughData("val_fraction and test_fraction must be in (0, 1) and sum below 1")
        if not 0 <= self.holdout_fraction < 0.5:
            raise NotEnoughData(f"holdout_fraction ({self.holdout_fraction}) must be in [0, 0.5)")


@dataclass(frozen=True)
class Scaler:
    """Per-feature standardisation fitted on the training part only."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, rows: np.ndarray) -> "Scaler":
        mean = rows.mean(axis=0)
        std = rows.std(axis=0)
        # A constant feature in the training part would divide by zero; leave it unscaled.
        std = np.where(std > 1e-12, std, 1.0)
        return cls(tuple(float(v) for v in mean), tuple(float(v) for v in std))

    def transform(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` scaled, as float32 (the dtype the model trains in)."""
        return ((rows - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Sequence[float]]) -> "Scaler":
        return cls(tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"]))


@dataclass
class SymbolDataset:
    """A symbol's scaled features, labels, and the end rows of each part's windows."""

    symbol: str
    feature_names: tuple[str, ...]
    feature_hash: str
    spec_version: str
    spec: WindowSpec
    features: np.ndarray
    """Scaled, float32, rows x features; held once, never per window."""
    close: np.ndarray
    labels: np.ndarray
    """float32 per row; meaningful only at sample end rows."""
    future_return: np.ndarray
    """``close[t + horizon] / close[t] - 1`` per row (0 past the end)."""
    train_ends: np.ndarray
    val_ends: np.ndarray
    test_ends: np.ndarray
    scaler: Scaler
    timestamps: np.ndarray = field(repr=False, default_factory=lambda: np.array([]))

    @property
    def input_size(self) -> int:
        return int(self.features.shape[1])

    def windows_view(self) -> np.ndarray:
        """Every window as (starts, window, features): a strided view, no copy of the rows.

        The window ending at row ``t`` is ``view[t - window + 1]``; slicing keeps it a view.
        """
        view = np.lib.stride_tricks.sliding_window_view(self.features, self.spec.window, axis=0)
        # sliding_window_view puts the window axis last: (starts, features, window).
        return view.transpose(0, 2, 1)


def gather_windows(features: Any, ends: Any, window: int) -> Any:
    """A batch of windows (batch, window, features) gathered by index from the feature matrix.

    Works on NumPy arrays and on torch tensors (on their device): the only copy made is
    the batch itself, which the LSTM needs contiguous anyway.
    """
    offsets = _arange_like(ends, window) - (window - 1)
    return features[ends[:, None] + offsets[None, :]]


def _arange_like(ends: Any, n: int) -> Any:
    if isinstance(ends, np.ndarray):
        return np.arange(n, dtype=ends.dtype)
    import torch

    return torch.arange(n, device=ends.device, dtype=ends.dtype)


def verify_feature_hash(
    path: Path,
    stored_hash: str,
    *,
    expected_hash: str | None,
    spec_version: str = "",
    definitions: Sequence[dict[str, Any]] | None = None,
    recomputed_hash: str | None = None,
) -> None:
    """Refuse a file whose stored hash disagrees with its spec (recomputed here from ``definitions``,
    or already recomputed by the caller as ``recomputed_hash``) or with the hash the caller expects."""
    recomputed = feature_hash(spec_version, definitions) if definitions is not None else recomputed_hash
    if recomputed is not None:
        if recomputed != stored_hash:
            raise FeatureHashMismatch(
                f"{path} says its feature hash is {_short(stored_hash)} but its spec hashes to "
                f"{_short(recomputed)}; rebuild features (console features build)"
            )
    if expected_hash is not None and expected_hash != stored_hash:
        raise FeatureHashMismatch(
            f"{path} was built with feature hash {_short(stored_hash)} but training expects "
            f"{_short(expected_hash)}; rebuild features (console features build) or sync the matching spec"
        )


def load_symbol_dataset(
    path: Path,
    spec: WindowSpec = WindowSpec(),
    *,
    expected_hash: str | None = None,
    definitions: Sequence[dict[str, Any]] | None = None,
    recomputed_hash: str | None = None,
) -> SymbolDataset:
    """Load, check and split one feature file; raises one-line `TrainingInputError`s on bad input."""
    spec.validate()
    path = Path(path)
    try:
        frame, meta = read_feature_file(path)
    except FeatureFileError as exc:
        raise FeatureFileProblem(str(exc)) from exc
    verify_feature_hash(
        path,
        meta.feature_hash,
        expected_hash=expected_hash,
        spec_version=meta.spec_version,
        definitions=definitions,
        recomputed_hash=recomputed_hash,
    )
    if not meta.feature_names:
        raise NotEnoughData(f"{path} names no features; rebuild features (console features build)")
    raw = frame.loc[:, list(meta.feature_names)].to_numpy(dtype=np.float64)
    close = frame["close"].to_numpy(dtype=np.float64)
    _refuse_non_finite(path, raw, close, meta.feature_names)
    rows = len(frame)
    if spec.horizon >= rows:
        raise NotEnoughData(f"label horizon {spec.horizon} is longer than the data ({rows} rows in {path})")
    train_ends, val_ends, test_ends = split_ends(rows, spec, where=str(path))
    if "timestamp" in frame:
        # In time, not rows (training.features.gaps): a window across a hole is no sample,
        # and a label is the close exactly ``horizon`` bars later in time, or none.
        in_time = time_contiguous(frame["timestamp"], spec.window - 1, spec.horizon)
        train_ends, val_ends, test_ends = (e[in_time[e]] for e in (train_ends, val_ends, test_ends))
        if min(len(val_ends), len(test_ends), len(train_ends)) < MIN_SAMPLES_PER_PART:
            raise NotEnoughData(f"{path} has too few windows without a gap in time in some part "
                                f"({len(train_ends)}/{len(val_ends)}/{len(test_ends)}); fetch more history")  # fmt: skip
    scaler = Scaler.fit(raw[: train_ends[-1] + 1])
    future_close = np.concatenate([close[spec.horizon :], np.full(spec.horizon, np.nan)])
    with np.errstate(invalid="ignore"):
        labels = (future_close > close).astype(np.float32)
        future_return = np.nan_to_num(future_close / close - 1.0)
    return SymbolDataset(
        symbol=meta.symbol,
        feature_names=tuple(meta.feature_names),
        feature_hash=meta.feature_hash,
        spec_version=meta.spec_version,
        spec=spec,
        features=scaler.transform(raw),
        close=close,
        labels=labels,
        future_return=future_return,
        train_ends=train_ends,
        val_ends=val_ends,
        test_ends=test_ends,
        scaler=scaler,
        timestamps=frame["timestamp"].to_numpy() if "timestamp" in frame else np.array([]),
    )


def split_ends(rows: int, spec: WindowSpec, *, where: str = "the data") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """End rows of the train, validation and test windows, chronological, purged between parts.

    The newest ``holdout_fraction`` of the samples (and ``horizon`` more, so no test label
    reaches into them) belong to no part: `holdout_ends` names them."""
    ends = _usable(rows, spec)
    n = len(ends)
    n_val = int(n * spec.val_fraction)
    n_test = int(n * spec.test_fraction)
    gap = spec.purge_gap
    n_train = n - n_val - n_test - 2 * gap
    if min(n_val, n_test) < MIN_SAMPLES_PER_PART or n_train < MIN_SAMPLES_PER_PART:
        needed = _rows_needed(spec)
        raise NotEnoughData(
            f"{where} has {rows} rows; window {spec.window}, horizon {spec.horizon} and a purge gap of {gap} "
            f"between parts need at least {needed} (fetch more history or shorten the window)"
        )
    train = ends[:n_train]
    val = ends[n_train + gap : n_train + gap + n_val]
    test = ends[n - n_test :]
    return train, val, test


def _usable(rows: int, spec: WindowSpec) -> np.ndarray:
    ends = np.arange(spec.window - 1, rows - spec.horizon, dtype=np.int64)
    n_hold = int(len(ends) * spec.holdout_fraction)
    return ends[: len(ends) - n_hold - spec.horizon] if n_hold else ends


def holdout_ends(rows: int, spec: WindowSpec) -> np.ndarray:
    """End rows reserved for the gate (empty without a holdout): after the test part's last label."""
    ends = np.arange(spec.window - 1, rows - spec.horizon, dtype=np.int64)
    n_hold = int(len(ends) * spec.holdout_fraction)
    return ends[len(ends) - n_hold :] if n_hold else ends[:0]


def _rows_needed(spec: WindowSpec) -> int:
    # Smallest row count whose split leaves every part MIN_SAMPLES_PER_PART samples.
    rows = spec.window + spec.horizon
    while True:
        n = len(_usable(rows, spec))
        n_val, n_test = int(n * spec.val_fraction), int(n * spec.test_fraction)
        if min(n_val, n_test, n - n_val - n_test - 2 * spec.purge_gap) >= MIN_SAMPLES_PER_PART:
            return rows
        rows += max(1, rows // 50)


def _refuse_non_finite(path: Path, raw: np.ndarray, close: np.ndarray, names: Sequence[str]) -> None:
    bad = ~np.isfinite(raw)
    if bad.any():
        counts = bad.sum(axis=0)
        worst = [f"{names[i]} ({int(counts[i])})" for i in np.flatnonzero(counts)[:3]]
        raise NonFiniteValues(
            f"{path} has NaN or infinite feature values: {', '.join(worst)}; fix the feature build "
            "(warm-up rows must be dropped)"
        )
    if not np.isfinite(close).all() or (close <= 0).any():
        raise NonFiniteValues(f"{path} has NaN, infinite or non-positive close prices; refetch the candles")


def _short(digest: str) -> str:
    return digest if len(digest) <= 23 else digest[:23] + "..."
