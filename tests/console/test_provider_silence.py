"""While the provider is unreachable (a dead sandbox daemon, an API outage), the train step's host
watch says so within a minute, and again each minute, instead of waiting silently for hours."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from console.hosts import RunHosts
from remote.backends.ssh.hosts import RemoteLayout, SshHost
from remote.errors import RemoteError
from remote.providers.base import ProviderCapability


class _Unreachable:
    def lost_reason(self, instance_id: str) -> str | None:
        raise RemoteError("cannot reach the EC2 endpoint http://127.0.0.1:1: connection refused")


def test_an_unreachable_provider_is_reported_within_a_minute_and_each_minute_after() -> None:
    told: list[tuple[str, str]] = []
    now = [0.0]
    provider = SimpleNamespace(capabilities=frozenset({ProviderCapability.RENTS_MACHINES}))
    ctx = SimpleNamespace(
        log=logging.getLogger("test.provider-silence"),
        emit=lambda kind, message, **data: told.append((kind, message)),
        instances=_Unreachable(),
        resources=SimpleNamespace(provider=lambda: provider),
    )
    hosts = RunHosts(ctx, clock=lambda: now[0])  # type: ignore[arg-type]
    host = SshHost("i-0abc", RemoteLayout.at("/home/ubuntu/rc"), "unknown")
    for second in range(0, 150, 2):  # the follow loop asks every two seconds
        now[0] = float(second)
        assert hosts.lost_reason(host) is None  # unreachable is not evidence the host is lost
    assert [kind for kind, _ in told] == ["provider.unreachable", "provider.unreachable"]
    assert "unreachable for 60s" in told[0][1] and "i-0abc" in told[0][1] and "sandbox" in told[0][1]
