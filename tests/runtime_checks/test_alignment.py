"""Three-way alignment: training file, runtime builder on fresh candles, model checkpoint."""

from __future__ import annotations

import pytest

from runtime_checks.alignment import check_symbol_alignment, compare, list_difference
from runtime_checks.errors import CandleGap, CheckInputError, StaleCandles
from runtime_checks.runner import run_alignment
from runtime_checks.small import SmallBuilder, write_model


def test_alignment_passes_when_file_runtime_and_checkpoint_agree(dirs, builder, candles):
    features, models = dirs
    result = check_symbol_alignment("BTC-USD", models_dir=models, features_dir=features, builder=builder, candles=candles)
    assert result.passed, result.summary
    assert result.figures["feature_count"] == 8
    assert result.details["counts"] == {"training_file": 8, "runtime": 8, "model": 8, "model_input_size": 8}


def test_alignment_names_missing_extra_and_moved_per_source(dirs, candles):
    features, models = dirs
    drifted = SmallBuilder(drop=["vol_ratio"], swap=True)
    result = check_symbol_alignment("BTC-USD", models_dir=models, features_dir=features, builder=drifted, candles=candles)
    assert not result.passed
    details = result.to_dict()["details"]
    runtime = details["differences"]["runtime"]
    assert runtime["missing"] == ["vol_ratio"]
    assert {m["name"] for m in runtime["moved"]} == {"ret_1", "ret_3", "hour_sin"}  # hour_sin shifts up one
    assert details["differences"]["model"] == {"missing": [], "extra": [], "moved": []}
    assert "counts training file 8 / runtime 7 / model 8" in result.summary
    assert "feature hash" in result.summary


def test_list_difference_reports_extra_names_and_positions():
    diff = list_difference(["a", "b", "c"], ["b", "a", "c", "d"])
    assert diff["missing"] == [] and diff["extra"] == ["d"]
    assert diff["moved"] == [{"name": "a", "from": 0, "to": 1}, {"name": "b", "from": 1, "to": 0}]


def test_checkpoint_input_size_disagreeing_with_names_fails_alignment():
    names = ["a", "b"]
    result = compare("BTC-USD", (names, "h"), (names, "h"), (names, "h", 3))
    assert not result.passed and "model input size 3" in result.summary


@pytest.mark.parametrize("key", ["input_size", "feature_names"])
def test_checkpoint_without_input_size_or_names_is_refused(tmp_path, dirs, builder, candles, key):
    features, _ = dirs
    spec = builder.spec("BTC-USD")
    models = tmp_path / "other"
    write_model(models, "BTC-USD", spec.names, spec.hash, drop_keys=[key])
    with pytest.raises(CheckInputError, match=f"lacks {key}") as err:
        check_symbol_alignment("BTC-USD", models_dir=models, features_dir=features, builder=builder, candles=candles)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)


def test_model_trained_on_another_symbol_is_refused(tmp_path, dirs, builder, candles):
    features, _ = dirs
    spec = builder.spec("BTC-USD")
    models = tmp_path / "other"
    write_model(models, "BTC-USD", spec.names, spec.hash, trained_symbol="ETH-USD")
    with pytest.raises(CheckInputError, match="trained on ETH-USD, not BTC-USD"):
        check_symbol_alignment("BTC-USD", models_dir=models, features_dir=features, builder=builder, candles=candles)


def test_empty_models_dir_is_refused_with_one_line(tmp_path, dirs, builder, candles):
    features, _ = dirs
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckInputError, match="no trained models in") as err:
        run_alignment(None, models_dir=tmp_path / "empty", features_dir=features, builder=builder, candles=candles)
    assert err.value.exit_code == 2


def test_model_folder_missing_a_file_is_refused(dirs, builder, candles):
    features, models = dirs
    next((models / "models" / "BTC-USD").iterdir()).joinpath("config.json").unlink()
    with pytest.raises(CheckInputError, match="missing config.json"):
        check_symbol_alignment("BTC-USD", models_dir=models, features_dir=features, builder=builder, candles=candles)


def test_stale_candles_are_refused(dirs, builder, frame_candles):
    features, models = dirs
    source = frame_candles(now=frame_candles().now() + 3600)  # the feed stopped an hour ago
    with pytest.raises(StaleCandles, match="newest candle closed 6[0-9] min ago"):
        check_symbol_alignment("BTC-USD", models_dir=models, features_dir=features, builder=builder, candles=source)


def test_gap_longer_than_allowed_is_refused(dirs, builder, frame_candles):
    features, models = dirs
    with pytest.raises(CandleGap, match="30 candles missing after"):
        check_symbol_alignment("BTC-USD", models_dir=models, features_dir=features, builder=builder,
                               candles=frame_candles(drop=slice(300, 330)))


def test_training_file_for_another_symbol_is_refused(tmp_path, builder, candles):
    from runtime_checks.small import write_training_file

    spec = builder.spec("BTC-USD")
    write_training_file(tmp_path / "f", "BTC-USD", mode="structured", days=3, stored_symbol="ETH-USD")
    write_model(tmp_path / "m", "BTC-USD", spec.names, spec.hash)
    with pytest.raises(CheckInputError, match="holds features for ETH-USD"):
        check_symbol_alignment("BTC-USD", models_dir=tmp_path / "m", features_dir=tmp_path / "f", builder=builder, candles=candles)


class FillingBuilder(SmallBuilder):
    """Same names, order and hash as the training builder, but its 12-bar volatility reads
    a quarter high: the kind of skew only values show (a hole filled on one side only)."""

    def build(self, symbol, candles):
        out = super().build(symbol, candles)
        out["vol_12"] = out["vol_12"] * 1.25
        return out


def test_alignment_compares_values_for_the_same_timestamps_and_names_the_skewed_feature(dirs, builder, candles):
    features, models = dirs
    good = check_symbol_alignment("BTC-USD", models_dir=models, features_dir=features, builder=builder, candles=candles)
    assert good.passed and good.figures["value_rows_compared"] > 1000 and good.figures["value_rows_skewed"] == 0
    assert "values agree within 0.1 sd" in good.summary
    bad = check_symbol_alignment("BTC-USD", models_dir=models, features_dir=features, builder=FillingBuilder(), candles=candles)
    assert not bad.passed
    assert "values differ beyond 0.1 sd" in bad.summary and "vol_12 on" in bad.summary and "UTC: runtime" in bad.summary
    skew = bad.details["value_skew"]
    assert [f["name"] for f in skew["features"]] == ["vol_12"] and skew["features"][0]["worst_sd"] > 0.1
