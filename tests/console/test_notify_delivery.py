"""Notifications delivered through Apprise's json:// scheme to a real local HTTP receiver."""

from __future__ import annotations

import logging
import secrets
import time

from console.notify import EventRelay, Notifier, notification_urls
from console.redact import register_secret
from tests.console.test_watchdog_support import (  # noqa: F401  (fixtures)
    _isolated_environment, make_settings, new_run, receiver, store,
)


def _fake_bot_token() -> str:
    return f"{secrets.randbelow(10**9) + 10**8}:" + secrets.token_urlsafe(27)[:35]


def test_message_arrives_at_the_configured_url(receiver):
    notifier = Notifier([receiver.url])
    assert notifier.send("instance i-1 terminated", "budget reached; cost $1.23", "warning")
    assert receiver.received == [
        {"version": "1.0", "title": "instance i-1 terminated", "message": "budget reached; cost $1.23",
         "attachments": [], "type": "warning"}
    ]


def test_telegram_url_is_built_from_token_and_chat_id(tmp_path, receiver):
    token = _fake_bot_token()
    settings = make_settings(tmp_path, telegram_bot_token=token, telegram_chat_id="424242",
                             notify_urls=[receiver.url])
    urls = notification_urls(settings)
    assert urls == [f"tgram://{token}/424242", receiver.url]


def test_no_urls_means_nothing_is_sent_and_nothing_fails(tmp_path):
    notifier = Notifier.from_settings(make_settings(tmp_path))
    assert not notifier.enabled
    assert notifier.send("x", "y") is False


def test_tokens_never_reach_the_logs_even_when_telegram_fails(tmp_path, receiver, caplog):
    token = _fake_bot_token()
    register_secret(token)
    settings = make_settings(tmp_path, telegram_bot_token=token, telegram_chat_id="424242",
                             notify_urls=[receiver.url])
    caplog.set_level(logging.DEBUG)
    notifier = Notifier.from_settings(settings)
    # Telegram is unreachable from the test (no network): Apprise logs its failure in detail.
    notifier.send("run r1 failed", f"train: crashed (token would be {token})", "failure")
    assert receiver.received and token not in receiver.received[0]["message"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "apprise" in {r.name for r in caplog.records}
    assert token not in logged
    assert token.split(":")[1] not in logged


def test_relay_announces_run_and_instance_events_with_cost(tmp_path, store, receiver):
    notifier = Notifier([receiver.url])
    relay = EventRelay(store, notifier, tmp_path / "notify.json")
    run = new_run(store, "run-n1")
    store.upsert_instance("i-0abc", run_id=run, provider="ec2", state="running", instance_type="g5.xlarge",
                          zone="us-east-1b", launched_at=time.time() - 1800)
    store.add_cost_sample("i-0abc", run, 0.2968, 1.006, "sandbox table")
    store.mark_instance_terminated("i-0abc", "watchdog (heartbeat): no heartbeat")
    store.set_run_status(run, "failed", summary="train: out of memory")
    assert relay.pump() == 3
    titles = receiver.titles()
    assert titles == ["run run-n1 started", "instance i-0abc terminated", "run run-n1 failed"]
    terminated = receiver.received[1]["message"]
    assert "no heartbeat" in terminated and "cost $0.1" in terminated and "sandbox table" in terminated
    # The cursor survives a restart: nothing is sent twice.
    again = EventRelay(store, notifier, tmp_path / "notify.json")
    assert again.pump() == 0


def test_relay_announces_a_launch_once(tmp_path, store, receiver):
    relay = EventRelay(store, Notifier([receiver.url]), tmp_path / "notify.json")
    assert relay.announce_launch("i-1", instance_type="g4dn.xlarge", zone="us-east-1a", rate_usd_per_h=0.1578,
                                 source="sandbox table", run_id="r")
    assert not relay.announce_launch("i-1", instance_type="g4dn.xlarge", zone="us-east-1a", rate_usd_per_h=0.1578,
                                     source="sandbox table", run_id="r")
    assert receiver.titles() == ["instance i-1 launched"]
    assert "$0.1578/h (sandbox table)" in receiver.received[0]["message"]


def test_a_dead_receiver_does_not_raise(tmp_path):
    notifier = Notifier(["json://127.0.0.1:9/nothing-listens-here"])
    assert notifier.send("t", "b") is False


def test_relay_tells_each_launch_and_termination_once(tmp_path, store, receiver):
    relay = EventRelay(store, Notifier([receiver.url]), tmp_path / "notify.json")
    run = new_run(store, "run-n2")
    store.upsert_instance("i-0def", run_id=run, provider="ec2", state="running", instance_type="g4dn.xlarge",
                          zone="us-east-1a", launched_at=time.time())
    # As the launch step writes it.
    store.add_event(run, "launch", "instance.launched", "g4dn.xlarge in us-east-1a: cheapest zone",
                    {"instance_id": "i-0def", "instance_type": "g4dn.xlarge", "zone": "us-east-1a",
                     "spot_usd_per_hour": 0.1578, "source": "sandbox table"})
    store.mark_instance_terminated("i-0def", "terminate step")
    store.add_event(run, "terminate", "instance.terminated", "i-0def terminated (confirmed)", {"instance_id": "i-0def"})
    relay.pump()
    assert receiver.titles() == ["run run-n2 started", "instance i-0def launched", "instance i-0def terminated"]
    assert "$0.1578/h (sandbox table)" in receiver.received[1]["message"]


def test_relay_announces_each_engine_coin_that_failed(tmp_path, store, receiver):
    relay = EventRelay(store, Notifier([receiver.url]), tmp_path / "notify.json")
    run = new_run(store, "run-e1")
    store.add_event(run, "engine-data", "engine.symbol_failed", "AAJ-USD skipped: 2 days of history",
                    {"symbol": "AAJ-USD", "state": "skipped"})
    store.add_event(run, "engine-train", "engine.symbol_failed", "ETH-USD failed: timed out after 2700 s",
                    {"symbol": "ETH-USD", "state": "failed"})
    relay.pump()
    titles = receiver.titles()
    assert "engine: AAJ-USD skipped" in titles and "engine: ETH-USD failed" in titles
    assert receiver.received[-1]["type"] == "failure"
