"""The cost ledger: per-second integration of rate changes, on-demand equivalent, budgets, `console cost`."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from console import cost
from console.cli import cli
from tests.console.test_watchdog_support import _isolated_environment, make_settings, new_run, store  # noqa: F401

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc).timestamp()


def _instance(store, iid: str, run_id: str | None, *, launched: float, ended: float | None = None, **data):
    store.upsert_instance(iid, run_id=run_id, provider="ec2", state="running", instance_type="g5.xlarge",
                          zone="us-east-1b", launched_at=launched, data=data or None)
    if ended is not None:
        store.mark_instance_terminated(iid, "test")
        with store._tx() as conn:  # the test decides when it ended
            conn.execute("UPDATE instances SET terminated_at = ? WHERE id = ?", (ended, iid))


def _rate(store, iid: str, ts: float, spot: float, od: float | None = 1.006, source: str = "sandbox table"):
    store.add_cost_sample(iid, None, spot, od, source)
    with store._tx() as conn:
        conn.execute("UPDATE costs SET ts = ? WHERE id = (SELECT MAX(id) FROM costs)", (ts,))


def test_price_changes_are_integrated_per_second():
    changes = [cost.Rate(T0, 0.30, 1.0, "t"), cost.Rate(T0 + 1800, 0.60, 1.0, "t")]
    spot, on_demand = cost.integrate(changes, T0, T0 + 3600)
    assert spot == pytest.approx(0.30 * 0.5 + 0.60 * 0.5)
    assert on_demand == pytest.approx(1.0)
    # Before the first recorded change the first rate applies (the price at launch).
    spot, _ = cost.integrate([cost.Rate(T0 + 600, 0.36, None, "t")], T0, T0 + 1200)
    assert spot == pytest.approx(0.36 * 1200 / 3600)


def test_instance_line_has_hours_rate_cost_on_demand_and_savings(store):
    _instance(store, "i-1", None, launched=T0, ended=T0 + 7200, volume_gb=50)
    _rate(store, "i-1", T0, 0.30)
    _rate(store, "i-1", T0 + 3600, 0.40)
    line = cost.instance_cost(store, next(iter(store.instances())), now=T0 + 10_000)
    storage = 50 * 0.08 / 730 * 2
    assert line.hours == pytest.approx(2.0)
    assert line.spot_usd == pytest.approx(0.70)
    assert line.storage_usd == pytest.approx(storage)
    assert line.cost_usd == pytest.approx(0.70 + storage)
    assert line.on_demand_usd == pytest.approx(2 * 1.006 + storage)
    assert line.savings_usd == pytest.approx(2 * 1.006 - 0.70)
    assert line.source == "sandbox table" and not line.live


def test_short_life_is_billed_one_minute(store):
    _instance(store, "i-2", None, launched=T0, ended=T0 + 10)
    _rate(store, "i-2", T0, 3.6)
    line = cost.instance_cost(store, store.instances()[0], now=T0 + 100)
    assert line.seconds == 60
    assert line.spot_usd == pytest.approx(0.06)


def test_record_rate_stores_only_changes(store):
    assert cost.record_rate(store, "i-3", None, 0.3, 1.0, "aws")
    assert not cost.record_rate(store, "i-3", None, 0.3, 1.0, "aws")
    assert cost.record_rate(store, "i-3", None, 0.31, 1.0, "aws")
    assert [r.spot_usd_per_h for r in cost.rates(store, "i-3")] == [0.3, 0.31]


def test_daily_spend_counts_only_today(store):
    midnight = cost.utc_day_start(T0)
    _instance(store, "i-4", None, launched=midnight - 3600)
    _rate(store, "i-4", midnight - 3600, 1.0, None)
    assert cost.daily_spend(store, now=midnight + 1800) == pytest.approx(0.5 + 100 * 0.08 / 730 * 0.5)


def test_budget_breaches_name_run_day_and_instance(tmp_path, store):
    settings = make_settings(tmp_path, budget={"run_usd": 1.0, "daily_usd": 2.0, "instance_usd": 0.9})
    new_run(store, "run-b", params={"budget_usd": 0.5})
    now = time.time()
    _instance(store, "i-5", "run-b", launched=now - 3600)
    _rate(store, "i-5", now - 3600, 1.0, None)
    breaches = {b.kind: b for b in cost.budget_breaches(store, settings, live_ids=["i-5"], now=now)}
    assert set(breaches) == {"run", "instance"} or set(breaches) == {"run", "instance", "daily"}
    assert breaches["run"].limit_usd == 0.5 and breaches["run"].instance_ids == ("i-5",)
    assert "run run-b budget reached" in breaches["run"].reason
    new_run(store, "run-rich", params={"budget_usd": 50.0})
    _instance(store, "i-8", "run-rich", launched=now - 3600)
    _rate(store, "i-8", now - 3600, 1.0, None)
    assert cost.budget_breaches(store, make_settings(tmp_path), live_ids=["i-8"], now=now) == []


def test_projection_extends_the_current_rate_to_the_end_of_the_step(store):
    now = time.time()
    new_run(store, "run-p")
    store.update_step("run-p", "train", "running", message="x", started_at=now - 600, policy={"timeout_s": 3600})
    _instance(store, "i-6", "run-p", launched=now - 600)
    _rate(store, "i-6", now - 600, 0.36, None)
    line = cost.instance_cost(store, store.instances()[0], now=now)
    remaining = cost.step_remaining_s(store, "run-p", now=now)
    assert remaining == pytest.approx(3000)
    assert cost.projected_cost(line, remaining) == pytest.approx(line.cost_usd + line.rate_usd_per_h * 3000 / 3600)


def test_cost_command_prints_table_with_totals(tmp_path, store):
    now = time.time()
    new_run(store, "run-c", params={"budget_usd": 10.0})
    _instance(store, "i-7", "run-c", launched=now - 7200, ended=now - 3600)
    _rate(store, "i-7", now - 7200, 0.2968)
    runner = CliRunner()
    args = ["cost", "--state-dir", str(store.state_dir), "--days", "2"]
    result = runner.invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for text in ("run-c", "i-7", "1.00", "0.3078", "TOTAL", "budget $10.00", "sandbox table", "daily budget"):
        assert text in result.output
    as_json = json.loads(runner.invoke(cli, [*args, "--json"]).output)
    assert as_json["lines"][0]["cost_usd"] == pytest.approx(0.2968 + 100 * 0.08 / 730, rel=1e-3)
    assert runner.invoke(cli, ["cost", "--state-dir", str(store.state_dir), "--run", "nope"]).exit_code != 0
