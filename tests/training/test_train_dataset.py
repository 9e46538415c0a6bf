"""Feature files become labelled windows and a purged split; bad input is refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.dataset import WindowSpec, gather_windows, load_symbol_dataset, verify_feature_hash
from training.errors import FeatureHashMismatch, NonFiniteValues, NotEnoughData
from training.families.lstm.synthetic import (
    SPEC_VERSION, synthetic_definitions, synthetic_frame, synthetic_hash, write_synthetic_feature_file,
)  # fmt: skip

SPEC = WindowSpec(window=20, horizon=3, longest_feature_window=30)


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and excinfo.value.exit_code == 2
    return message


def test_windows_gathered_by_index_match_the_strided_view_which_copies_nothing(tmp_path):
    data = load_symbol_dataset(write_synthetic_feature_file(tmp_path, "BTC-USD", 800, 4), SPEC)
    view = data.windows_view()
    assert np.shares_memory(view, data.features)
    ends = data.test_ends[:7]
    from_view = np.stack([view[t - SPEC.window + 1] for t in ends])
    np.testing.assert_array_equal(gather_windows(data.features, ends, SPEC.window), from_view)
    on_torch = gather_windows(torch.from_numpy(data.features), torch.from_numpy(ends), SPEC.window)
    np.testing.assert_array_equal(on_torch.numpy(), from_view)
    # The window ending at t holds rows t-window+1 .. t, oldest first.
    np.testing.assert_array_equal(from_view[0][-1], data.features[ends[0]])


def test_split_is_chronological_with_a_purge_gap_of_horizon_plus_longest_feature_window(tmp_path):
    data = load_symbol_dataset(write_synthetic_feature_file(tmp_path, "BTC-USD", 800, 4), SPEC)
    gap = SPEC.horizon + SPEC.longest_feature_window
    assert data.train_ends[-1] < data.val_ends[0] < data.val_ends[-1] < data.test_ends[0]
    assert data.val_ends[0] - data.train_ends[-1] > gap
    assert data.test_ends[0] - data.val_ends[-1] > gap
    assert data.test_ends[-1] + SPEC.horizon <= len(data.features) - 1


def test_labels_are_the_direction_of_the_close_horizon_bars_ahead(tmp_path):
    data = load_symbol_dataset(write_synthetic_feature_file(tmp_path, "BTC-USD", 800, 4), SPEC)
    t = data.val_ends
    np.testing.assert_array_equal(data.labels[t], (data.close[t + 3] > data.close[t]).astype(np.float32))


def test_scaler_is_fitted_on_the_training_rows_only(tmp_path):
    frame = synthetic_frame(800, 4)
    frame.loc[600:, "f1"] += 1000.0  # a late regime shift the scaler must not see
    data = load_symbol_dataset(write_synthetic_feature_file(tmp_path, "BTC-USD", 800, 4, frame=frame), SPEC)
    train_rows = frame["f1"].to_numpy()[: data.train_ends[-1] + 1]
    assert data.scaler.mean[1] == pytest.approx(train_rows.mean())
    assert abs(data.features[: data.train_ends[-1] + 1, 1].mean()) < 1e-4


def test_feature_file_with_another_hash_is_refused(tmp_path):
    path = write_synthetic_feature_file(tmp_path, "BTC-USD", 800, 4)
    with pytest.raises(FeatureHashMismatch) as excinfo:
        load_symbol_dataset(path, SPEC, expected_hash=synthetic_hash(5))
    assert "rebuild features" in _one_line(excinfo)


def test_feature_file_whose_stored_hash_disagrees_with_its_spec_is_refused(tmp_path):
    path = write_synthetic_feature_file(tmp_path, "BTC-USD", 800, 4, stored_hash="sha256:" + "0" * 64)
    with pytest.raises(FeatureHashMismatch) as excinfo:
        load_symbol_dataset(path, SPEC, definitions=synthetic_definitions(4))
    assert "its spec hashes to" in _one_line(excinfo)
    verify_feature_hash(path, synthetic_hash(4), expected_hash=synthetic_hash(4), spec_version=SPEC_VERSION,
                        definitions=synthetic_definitions(4))  # fmt: skip


def test_too_few_rows_for_window_and_split_is_refused(tmp_path):
    with pytest.raises(NotEnoughData) as excinfo:
        load_symbol_dataset(write_synthetic_feature_file(tmp_path, "BTC-USD", 120, 4), SPEC)
    message = _one_line(excinfo)
    assert "has 120 rows" in message and "need at least" in message


def test_label_horizon_longer_than_the_data_is_refused(tmp_path):
    path = write_synthetic_feature_file(tmp_path, "BTC-USD", 150, 4)
    with pytest.raises(NotEnoughData) as excinfo:
        load_symbol_dataset(path, WindowSpec(window=5, horizon=500, longest_feature_window=0))
    assert "longer than the data" in _one_line(excinfo)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_infinite_features_are_refused(tmp_path, bad):
    frame = synthetic_frame(800, 4)
    frame.loc[10, "f2"] = bad
    with pytest.raises(NonFiniteValues) as excinfo:
        load_symbol_dataset(write_synthetic_feature_file(tmp_path, "BTC-USD", 800, 4, frame=frame), SPEC)
    assert "f2 (1)" in _one_line(excinfo)
