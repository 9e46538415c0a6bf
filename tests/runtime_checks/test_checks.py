"""Check specs and results: results are immutable and survive the state store's JSON."""

from __future__ import annotations

import json

import pytest

from runtime_checks.checks import ALIGNMENT, CheckResult, CheckSpec, Severity


def test_result_is_immutable_down_to_its_figures():
    result = ALIGNMENT.result("BTC-USD", True, "ok", {"count": 3}, {"names": ["a", "b"]})
    with pytest.raises(Exception):
        result.passed = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.figures["count"] = 4  # type: ignore[index]
    assert result.details["names"] == ("a", "b")


def test_result_round_trips_through_json():
    spec = CheckSpec("latency", "prediction time vs budget", Severity.ADVISORY)
    result = spec.result("ETH-USD", False, "slow", {"ms": 12.5}, {"nested": {"x": [1, None]}})
    again = CheckResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result and not again.blocking and again.details["nested"]["x"] == (1, None)
