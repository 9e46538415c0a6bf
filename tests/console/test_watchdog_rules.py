"""The watchdog's rules against a real moto server through the real EC2 provider."""

from __future__ import annotations

import time
from pathlib import Path

from console.resources import Resources
from console.watchdog import Watchdog
from tests.console.test_watchdog_support import (  # noqa: F401  (fixtures)
    FlakyTerminate, _isolated_environment, creds, ec2, launch, make_settings, moto_url, new_run, provider,
    state_of, store,
)


def _dog(tmp_path: Path, store, provider, *, offset_s: float = 0.0, **settings) -> Watchdog:
    return Watchdog(Resources(make_settings(tmp_path / "state", **settings)), store, provider,
                    clock=lambda: time.time() + offset_s, retry_pause_s=0.01)


def _reason(store, instance_id: str) -> str:
    return next(r for r in store.instances() if r.id == instance_id).terminate_reason


def test_orphan_tagged_as_ours_is_terminated_and_reason_recorded(tmp_path, ec2, provider, store):
    orphan = launch(ec2, run_id="ghost-run")
    report = _dog(tmp_path, store, provider).run_pass()
    assert report.terminated == [orphan]
    assert state_of(ec2, orphan) == "terminated"
    assert "orphan" in _reason(store, orphan)
    kinds = [e.kind for e in store.events()]
    assert "watchdog.terminate" in kinds and "instance.terminated" in kinds


def test_instances_not_tagged_as_ours_are_left_alone(tmp_path, ec2, provider, store):
    stranger = launch(ec2, managed=False)
    report = _dog(tmp_path, store, provider).run_pass()
    assert report.seen == 0 and report.terminated == []
    assert state_of(ec2, stranger) in ("pending", "running")


def test_healthy_run_keeps_its_instance(tmp_path, ec2, provider, store):
    run = new_run(store, "run-healthy")
    inst = launch(ec2, run_id=run)
    report = _dog(tmp_path, store, provider).run_pass()
    assert report.seen == 1 and report.terminated == []
    assert state_of(ec2, inst) in ("pending", "running")
    # ...and it is now in the ledger, priced.
    assert store.cost_samples(inst)


def test_finished_run_that_left_its_instance_gets_it_terminated(tmp_path, ec2, provider, store):
    run = new_run(store, "run-failed", status="failed")
    inst = launch(ec2, run_id=run)
    report = _dog(tmp_path, store, provider).run_pass()
    assert report.terminated == [inst]
    assert "run run-failed failed but left its instance" in _reason(store, inst)


def test_lost_heartbeat_terminates_after_timeout_only(tmp_path, ec2, provider, store):
    run = new_run(store, "run-silent")
    inst = launch(ec2, run_id=run)
    assert _dog(tmp_path, store, provider, offset_s=20, watchdog={"heartbeat_timeout_s": 30}).run_pass().terminated == []
    report = _dog(tmp_path, store, provider, offset_s=40, watchdog={"heartbeat_timeout_s": 30}).run_pass()
    assert report.terminated == [inst]
    assert "no heartbeat from the console driving run run-silent" in _reason(store, inst)


def test_max_runtime_from_the_instance_tag(tmp_path, ec2, provider, store):
    run = new_run(store, "run-long")
    inst = launch(ec2, run_id=run, max_minutes=1)
    store.heartbeat(run)
    assert _dog(tmp_path, store, provider, offset_s=30).run_pass().terminated == []
    report = _dog(tmp_path, store, provider, offset_s=90).run_pass()
    assert report.terminated == [inst]
    assert "past its max runtime of 1 min" in _reason(store, inst)


def test_run_budget_reached_terminates_and_is_announced(tmp_path, ec2, provider, store):
    run = new_run(store, "run-poor", params={"budget_usd": 0.05})
    inst = launch(ec2, run_id=run)
    store.upsert_instance(inst, run_id=run, provider="ec2", state="running", instance_type="g4dn.xlarge",
                          zone="us-east-1a", launched_at=time.time())
    store.add_cost_sample(inst, run, 3.0, 5.0, "test")  # $3/h: the one-minute minimum is $0.05
    report = _dog(tmp_path, store, provider).run_pass()
    assert report.terminated == [inst]
    assert "run run-poor budget reached" in _reason(store, inst)
    assert any(e.kind == "budget.reached" for e in store.events())


def test_daily_budget_reached_terminates_every_live_instance(tmp_path, ec2, provider, store):
    a = launch(ec2, run_id=new_run(store, "run-a"))
    b = launch(ec2, run_id=new_run(store, "run-b"))
    for iid, run in ((a, "run-a"), (b, "run-b")):
        store.upsert_instance(iid, run_id=run, provider="ec2", state="running", launched_at=time.time() - 3600)
        store.add_cost_sample(iid, run, 1.0, 2.0, "test")
    # The day is the UTC day: just after midnight only the minutes since count. Two instances at
    # $1/h have spent 2 x those hours today (at most 2 x 1 h); the budget is three quarters of it.
    since_midnight = time.time() % 86400
    if since_midnight < 5:
        time.sleep(5)
        since_midnight = time.time() % 86400
    spent_today = 2 * min(3600.0, since_midnight) / 3600
    report = _dog(tmp_path, store, provider, budget={"daily_usd": 0.75 * spent_today}).run_pass()
    assert sorted(report.terminated) == sorted([a, b])
    assert "daily" in _reason(store, a)


def test_idle_gpu_with_no_step_running_is_terminated(tmp_path, ec2, provider, store):
    run = new_run(store, "run-idle")
    inst = launch(ec2, run_id=run)
    store.add_event(run, None, "host.reading", "gpu", {"instance_id": inst, "gpu_util_pct": 0.0})
    dog = _dog(tmp_path, store, provider, watchdog={"idle_timeout_s": 60})
    assert dog.run_pass().terminated == []
    dog.clock = lambda: time.time() + 120
    report = dog.run_pass()
    assert report.terminated == [inst]
    assert "GPU idle" in _reason(store, inst)


def test_idle_gpu_while_a_step_runs_is_left_alone(tmp_path, ec2, provider, store):
    run = new_run(store, "run-busy")
    inst = launch(ec2, run_id=run)
    store.update_step(run, "train", "running", message="training", started_at=time.time())
    store.add_event(run, None, "host.reading", "gpu", {"instance_id": inst, "gpu_util_pct": 0.0})
    dog = _dog(tmp_path, store, provider, watchdog={"idle_timeout_s": 60})
    dog.run_pass()
    dog.clock = lambda: time.time() + 120
    assert dog.run_pass().terminated == []
    assert state_of(ec2, inst) in ("pending", "running")


def test_waits_for_the_upload_then_terminates(tmp_path, ec2, provider, store):
    run = new_run(store, "run-trained", status="failed")
    store.update_step(run, "train", "succeeded", message="trained", finished_at=time.time())
    inst = launch(ec2, run_id=run)
    dog = _dog(tmp_path, store, provider, watchdog={"upload_grace_s": 600})
    report = dog.run_pass()
    assert report.terminated == [] and report.waiting_for_upload == [inst]
    assert any(e.kind == "watchdog.awaiting_upload" for e in store.events())
    store.update_step(run, "upload", "succeeded", message="uploaded and verified")
    assert dog.run_pass().terminated == [inst]


def test_upload_grace_runs_out_and_terminates_anyway(tmp_path, ec2, provider, store):
    run = new_run(store, "run-stuck", status="cancelled")
    store.update_step(run, "train", "succeeded", message="trained", finished_at=time.time())
    inst = launch(ec2, run_id=run)
    dog = _dog(tmp_path, store, provider, watchdog={"upload_grace_s": 30})
    assert dog.run_pass().waiting_for_upload == [inst]
    dog.clock = lambda: time.time() + 31
    assert dog.run_pass().terminated == [inst]
    assert "models still not uploaded after 30s" in _reason(store, inst)


def test_transient_terminate_failures_are_retried_until_confirmed(tmp_path, ec2, provider, store):
    orphan = launch(ec2)
    flaky = FlakyTerminate(provider, failures=4)
    dog = _dog(tmp_path, store, flaky)
    first = dog.run_pass()
    assert first.failed == [orphan] and first.terminated == []
    assert state_of(ec2, orphan) in ("pending", "running")
    assert [e.kind for e in store.events()].count("watchdog.terminate_failed") == 1
    second = dog.run_pass()
    assert second.terminated == [orphan]
    assert state_of(ec2, orphan) == "terminated"
    assert flaky.calls == 5


def test_instance_terminated_elsewhere_is_recorded_as_ended(tmp_path, ec2, provider, store):
    run = new_run(store, "run-deadman")
    inst = launch(ec2, run_id=run)
    dog = _dog(tmp_path, store, provider)
    dog.run_pass()
    ec2.terminate_instances(InstanceIds=[inst])  # e.g. the dead-man switch, or a spot interruption
    dog.run_pass()
    record = next(r for r in store.instances() if r.id == inst)
    assert record.state == "terminated" and record.terminated_at is not None


def test_an_upload_event_releases_the_instance(tmp_path, ec2, provider, store):
    run = new_run(store, "run-evented", status="failed")
    store.update_step(run, "train", "succeeded", message="trained", finished_at=time.time())
    inst = launch(ec2, run_id=run)
    dog = _dog(tmp_path, store, provider, watchdog={"upload_grace_s": 600})
    assert dog.run_pass().waiting_for_upload == [inst]
    store.add_event(run, "upload", "artifacts.uploaded", "version 20260302T100000Z", {"version": "x"})
    assert dog.run_pass().terminated == [inst]


def test_another_operators_instances_are_not_judged(tmp_path, ec2, provider, store):
    theirs = launch(ec2, run_id="their-run")
    ec2.create_tags(Resources=[theirs], Tags=[{"Key": "owner", "Value": "someone-else"}])
    mine = launch(ec2, run_id="lost-run")
    ec2.create_tags(Resources=[mine], Tags=[{"Key": "owner", "Value": "me"}])
    report = _dog(tmp_path, store, provider, cloud={"owner": "me"}).run_pass()
    assert report.terminated == [mine]
    assert state_of(ec2, theirs) in ("pending", "running")
