"""The sandbox daemon process: moto (behind the EC2 front), the market simulator, the fleet.

Started detached by `remote.sandbox.lifecycle.ensure_up` as
``python -m remote.sandbox.daemon --state-dir DIR``; stopped with SIGTERM. It writes its
pid file first and ``endpoints.json`` last, when everything answers, so a reader that
finds the endpoints file can use it. moto keeps its state in memory: a restarted daemon
is a fresh, empty cloud (instances of the previous one are gone, as their roots are).

It never outlives its purpose:

- its pid file is its lease: when the file is gone (the state directory was deleted, a
  test's temporary directory cleaned up) or names another process (a newer daemon), it
  shuts down by itself within about a second;
- a stop request (SIGTERM, SIGINT, or the lost pid file) gets a clean shutdown of at most
  ``--shutdown-grace-s`` seconds; past that, or on a second signal, it ends its hosts'
  processes and exits at once. The signal handler and the deadline run outside the event
  loop, so a loop that is stuck cannot keep the daemon alive.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from remote.sandbox.endpoints import SandboxPaths
from remote.sandbox.hosts import kill_processes_under
from remote.sandbox.prices import SANDBOX_PRICE_SOURCE

log = logging.getLogger("remote.sandbox.daemon")

REGION = "us-east-1"
SANDBOX_DLAMI = {
    "ami_id": "ami-0d1a5a7d0b0c0e0f1",
    "name": "Deep Learning OSS Nvidia Driver AMI GPU PyTorch 2.5.1 (Ubuntu 22.04) 20241115",
    "description": "Sandbox stand-in for the AWS Deep Learning AMI (no GPU in the sandbox)",
    "owner_id": "898082745236",
    "public": True,
    "state": "available",
    "architecture": "x86_64",
    "virtualization_type": "hvm",
    "hypervisor": "xen",
    "image_type": "machine",
    "root_device_type": "ebs",
    "root_device_name": "/dev/sda1",
    "creation_date": "2024-11-15T00:00:00.000Z",
    "platform": None,
}
"""A Deep Learning AMI moto would otherwise lack, so the default AMI pattern finds one."""


SHUTDOWN_GRACE_S = 10.0
"""How long a clean shutdown may take before the daemon ends everything and exits."""
PID_CHECK_S = 1.0
"""How often the daemon checks that its pid file is still there and still its own."""


class Shutdown:
    """The daemon's stop request: who asked, and the deadline that makes it final.

    `request` may be called from a signal handler, the pid-file watcher or the loop; the
    first call asks the event loop to stop and starts the deadline, later ones do nothing.
    """

    def __init__(self, paths: SandboxPaths, grace_s: float) -> None:
        self.paths = paths
        self.grace_s = grace_s
        self.requested = threading.Event()
        self.reason = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def attach(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        """Hand the serving loop's stop event over; a request made before now stops it at once."""
        self._loop, self._stop = loop, stop
        if self.requested.is_set():
            stop.set()

    def request(self, reason: str) -> None:
        if self.requested.is_set():
            return
        self.reason = reason
        self.requested.set()
        log.info("stopping: %s", reason)
        if self._loop is not None and self._stop is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop has closed already: the process is on its way out
                pass
        threading.Thread(target=self._deadline, name="shutdown-deadline", daemon=True).start()

    def on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.requested.is_set():
            _hard_exit(self.paths, f"second {name} while stopping")
        self.request(f"{name} received")

    def _deadline(self) -> None:
        time.sleep(self.grace_s)
        _hard_exit(self.paths, f"clean shutdown took longer than {self.grace_s:g}s")


def _hard_exit(paths: SandboxPaths, why: str) -> None:
    """End every process of this sandbox's hosts, drop our pid/endpoints files, exit now."""
    try:
        log.warning("exiting at once: %s", why)
        kill_processes_under(paths.root / "instances", grace_s=0.5)
        kill_processes_under(paths.root / "sagemaker", grace_s=0.5)
        kill_processes_under(paths.root / "batch", grace_s=0.5)
    finally:
        _drop_own_files(paths)
        os._exit(1)


def _drop_own_files(paths: SandboxPaths) -> None:
    for path in (paths.endpoints_file, paths.pid_file):
        if _owned(path):
            path.unlink(missing_ok=True)


def _watch_pid_file(paths: SandboxPaths, shutdown: Shutdown, interval_s: float) -> None:
    """Stop the daemon once its pid file is gone or names another process: nobody can find
    (or stop) a daemon without it, so it would run forever."""
    while not shutdown.requested.wait(interval_s):
        if not _owned(paths.pid_file):
            shutdown.request(f"its pid file {paths.pid_file} is gone or names another process")


def main(argv: list[str] | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT or its pid file goes. Returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m remote.sandbox.daemon")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--market-seed", type=int, default=7)
    parser.add_argument("--market-mode", default="structured")
    parser.add_argument("--batch-running", type=int, default=2, help="Batch children run at once (>= 1)")
    parser.add_argument("--shutdown-grace-s", type=float, default=SHUTDOWN_GRACE_S)
    args = parser.parse_args(argv)
    paths = SandboxPaths.under(args.state_dir)
    paths.root.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # asyncssh logs every command line at INFO; commands are the operator's business.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    shutdown = Shutdown(paths, args.shutdown_grace_s)
    # Plain signal handlers, not the loop's: they run even while the loop is busy or blocked.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, shutdown.on_signal)
    paths.pid_file.write_text(f"{os.getpid()}\n")
    threading.Thread(
        target=_watch_pid_file, args=(paths, shutdown, PID_CHECK_S), name="pid-file-watch", daemon=True
    ).start()
    try:
        return asyncio.run(_serve(paths, args, shutdown))
    finally:
        _drop_own_files(paths)
        # Whatever ended the loop, the process ends within the grace period from here.
        shutdown.request("the daemon is ending")


async def _serve(paths: SandboxPaths, args: argparse.Namespace, shutdown: Shutdown) -> int:
    started = time.monotonic()
    log.info("daemon starting")
    # A fresh moto is an empty cloud: the previous daemon's instance roots mean nothing now.
    # Processes a killed daemon left behind on its hosts (dead-man watchers, detached jobs)
    # belong to instances that no longer exist.
    await asyncio.to_thread(kill_processes_under, paths.root / "instances")
    await asyncio.to_thread(kill_processes_under, paths.root / "sagemaker")
    await asyncio.to_thread(kill_processes_under, paths.root / "batch")
    for sub in ("instances", "hostkeys", "sagemaker", "batch"):
        shutil.rmtree(paths.root / sub, ignore_errors=True)
    _prepare_moto_environment(paths)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    shutdown.attach(loop, stop)

    import boto3.session
    from botocore.config import Config

    from remote.sandbox.batch_front import BatchFront
    from remote.sandbox.batch_jobs import BatchRunner
    from remote.sandbox.fleet import Fleet
    from remote.sandbox.front import Ec2Front
    from remote.sandbox.sagemaker_front import SageMakerFront
    from remote.sandbox.sagemaker_jobs import SageMakerJobs

    base: dict[str, Any] = {
        "pid": os.getpid(),
        "region": REGION,
        "price_source": SANDBOX_PRICE_SOURCE,
        "started_at": datetime.now(timezone.utc).isoformat(),
    }

    def publish(hosts: dict[str, Any]) -> None:
        _write_json(paths.endpoints_file, {**base, "hosts": hosts})

    fleet = Fleet(paths.root, None, REGION, loop, publish)
    clients: dict[str, Any] = {}
    training_jobs = SageMakerJobs(paths.root / "sagemaker", lambda service: clients[service])
    batch_jobs = BatchRunner(paths.root / "batch", max_running=args.batch_running)
    moto = _FrontedMotoServer(
        lambda app: BatchFront(SageMakerFront(Ec2Front(app, fleet), training_jobs, REGION), batch_jobs)
    )
    moto_url = moto.start()
    session = boto3.session.Session(
        aws_access_key_id="SANDBOX" + secrets.token_hex(6).upper(),
        aws_secret_access_key=secrets.token_urlsafe(30),
        region_name=REGION,
    )
    # Batch children reach S3 through moto over HTTP, as a container reaches AWS.
    frozen = session.get_credentials().get_frozen_credentials()
    batch_jobs.base_env = {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": frozen.access_key,
        "AWS_SECRET_ACCESS_KEY": frozen.secret_key,
        "AWS_DEFAULT_REGION": REGION,
    }
    # The training jobs reach S3, IAM and Logs through moto itself, over HTTP like any client.
    clients.update({svc: session.client(svc, endpoint_url=moto_url) for svc in ("s3", "iam", "logs")})
    ec2 = session.client("ec2", endpoint_url=moto_url, config=Config(retries={"max_attempts": 2}))
    fleet.ec2 = ec2
    log.info("moto listening after %.2fs", time.monotonic() - started)
    # moto builds its EC2 backend (AMIs, instance types) on the first call: pay it now, not
    # in the operator's first command, while the market simulator starts beside it.
    warm = asyncio.ensure_future(asyncio.to_thread(ec2.describe_instances))
    market = await asyncio.to_thread(_start_market, args)
    log.info("market up after %.2fs", time.monotonic() - started)
    await warm
    base.update(
        moto_url=moto_url,
        market_url=market.url if market else None,
        market_mode=args.market_mode,
        market_seed=args.market_seed,
        batch_running=batch_jobs.max_running,
        market_clock_shift_s=market.clock_shift_s if market else 0,
    )
    publish({})
    log.info("sandbox up in %.2fs: moto %s, market %s", time.monotonic() - started, moto_url, base["market_url"])
    try:
        await fleet.run(stop)
    finally:
        training_jobs.shutdown()
        batch_jobs.close()
        if _owned(paths.endpoints_file):  # a newer daemon's file is not ours to remove
            paths.endpoints_file.unlink(missing_ok=True)
        # Each server polls for shutdown every 0.5 s: stop them side by side.
        stops = [asyncio.to_thread(moto.stop)] + ([asyncio.to_thread(market.stop)] if market is not None else [])
        await asyncio.gather(*stops)
    log.info("sandbox down")
    return 0


def _prepare_moto_environment(paths: SandboxPaths) -> None:
    """moto reads these at import: our AMI list (moto's own plus a Deep Learning AMI)."""
    spec = importlib.util.find_spec("moto")
    assert spec is not None and spec.origin is not None
    with gzip.open(Path(spec.origin).parent / "ec2" / "resources" / "amis.json.gz", "rt") as fh:
        amis = json.load(fh)
    amis.append(SANDBOX_DLAMI)
    _write_json(paths.root / "amis.json", amis)
    os.environ["MOTO_AMIS_PATH"] = str(paths.root / "amis.json")
    os.environ["MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION"] = "true"


def _start_market(args: argparse.Namespace) -> Any:
    try:
        from remote.sandbox.market_server import MarketSimulator
    except ImportError:  # the market simulator lands separately; the cloud half works without it
        log.warning("remote.sandbox.market is not importable; no market simulator")
        return None
    from remote.sandbox.market import clock_shift_for

    shift = clock_shift_for(_market_started_at(SandboxPaths.under(args.state_dir)))
    return MarketSimulator(
        seed=args.market_seed, mode=args.market_mode, host="127.0.0.1", port=0, clock_shift_s=shift
    ).start()


def _market_started_at(paths: SandboxPaths) -> float:
    """When this state directory's market started (unix seconds), recorded the first time:
    a restarted daemon carries the same market on instead of starting it over."""
    record = paths.root / "market-clock.json"
    try:
        return float(json.loads(record.read_text())["started_at"])
    except (OSError, ValueError, KeyError, TypeError):
        started = time.time()
        _write_json(record, {"started_at": started})
        return started


class _FrontedMotoServer:
    """moto's threaded server with the EC2 front wrapped around its WSGI app."""

    def __init__(self, wrap: Any) -> None:
        from moto.server import ThreadedMotoServer

        self._wrap = wrap
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)

    def start(self) -> str:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        class QuietHandler(MotoRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:  # one line per API call is noise
                pass

        server = self._server
        wrap = self._wrap

        def entry() -> None:
            app = wrap(DomainDispatcherApplication(create_backend_app))
            server._server = make_server("127.0.0.1", 0, app, True, request_handler=QuietHandler)
            server._server_ready_event.set()
            server._server.serve_forever()

        server._server_entry = entry  # type: ignore[method-assign]  # ThreadedMotoServer's own thread and stop(), our app
        server.start()
        host, port = server.get_host_and_port()
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.stop()


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def _owned(path: Path) -> bool:
    """True when a pid/endpoints file is this process's (a newer daemon may have replaced it)."""
    try:
        text = path.read_text()
        pid = int(json.loads(text)["pid"]) if path.suffix == ".json" else int(text.strip())
        return pid == os.getpid()
    except (OSError, ValueError, KeyError, TypeError):
        return False


if __name__ == "__main__":
    sys.exit(main())
