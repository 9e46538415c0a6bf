"""The feature spec: counts from configuration, names, families and the hash."""

from __future__ import annotations

import dataclasses

import pytest

from training.errors import BadMarketData
from training.features.spec import BASE_FEATURES, FeatureConfig, FeatureSpec, expected_counts, spec_for

NAMED = ["rsi_14", "macd", "macd_signal", "macd_hist", "bb_upper_20", "bb_middle_20", "bb_lower_20",
         "atr_14", "sma_7", "sma_14", "sma_21", "sma_50"]


def test_btc_and_sol_have_73_features_and_eth_54_by_default():
    assert {s: spec_for(s).count for s in ("BTC-USD", "ETH-USD", "SOL-USD")} == {"BTC-USD": 73, "ETH-USD": 54, "SOL-USD": 73}
    assert expected_counts() == {"BTC-USD": 73, "ETH-USD": 54, "SOL-USD": 73}


def test_which_symbols_take_multi_timeframe_features_is_configuration():
    config = FeatureConfig.from_mapping({"multi_timeframe_symbols": ["ETH-USD"]})
    assert spec_for("ETH-USD", config).count == 73
    assert spec_for("BTC-USD", config).count == 54
    assert spec_for("ETH-USD", config).timeframes == ("1m", "5m", "15m", "1h")


def test_unknown_feature_setting_is_refused():
    with pytest.raises(ValueError, match="unknown feature setting"):
        FeatureConfig.from_mapping({"multi_timeframe": ["BTC-USD"]})


def test_names_are_unique_and_include_the_talib_checked_indicators():
    names = spec_for("BTC-USD").names
    assert len(set(names)) == len(names)
    for name in NAMED:
        assert name in names
    assert not {"timestamp", "open", "close", "session", "volatility_regime"} & set(names)


def test_every_family_of_the_master_workflow_is_present():
    families = {f.family for f in spec_for("BTC-USD").features}
    assert {"session", "spread", "volume", "moving_average", "rsi", "macd", "bollinger", "volatility",
            "fundamentals", "multi_timeframe"} <= families
    assert all(f.description for f in spec_for("BTC-USD").features)


def test_hash_changes_with_a_parameter_a_name_or_the_order():
    base = spec_for("ETH-USD")
    feats = list(base.features)
    rsi = feats.index(next(f for f in feats if f.name == "rsi_14"))
    changed_param = list(feats)
    changed_param[rsi] = dataclasses.replace(feats[rsi], params=(("period", 15),))
    renamed = list(feats)
    renamed[rsi] = dataclasses.replace(feats[rsi], name="rsi_14b")
    swapped = list(feats)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    hashes = {base.hash}
    for variant in (changed_param, renamed, swapped):
        hashes.add(FeatureSpec("ETH-USD", tuple(variant)).hash)
    assert len(hashes) == 4
    # The prose description is not part of the hash.
    redescribed = [dataclasses.replace(f, description="x") for f in feats]
    assert FeatureSpec("ETH-USD", tuple(redescribed)).hash == base.hash


def test_hash_is_stable_across_calls():
    assert spec_for("BTC-USD").hash == spec_for("BTC-USD").hash == FeatureSpec("BTC-USD", spec_for("BTC-USD").features, timeframes=("1m", "5m", "15m", "1h")).hash
    assert spec_for("BTC-USD").hash != spec_for("ETH-USD").hash
    assert len(BASE_FEATURES) == 54


@pytest.mark.parametrize("bad", ["btc-usd", "BTC", "BTC-USD;rm -rf /", "../x-USD"])
def test_a_bad_symbol_is_refused_before_it_reaches_a_path(bad):
    with pytest.raises(BadMarketData):
        spec_for(bad)
