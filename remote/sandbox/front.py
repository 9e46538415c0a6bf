"""The sandbox's EC2 front: a WSGI layer in front of moto that adds what moto lacks.

boto3 talks plain HTTP to this layer; everything it does not handle goes to moto as is.
It adds, for EC2 query-protocol requests:

- DescribeSpotPriceHistory answered from the documented sandbox table (moto returns a
  constant), honouring the instance-type and availability-zone filters;
- RunInstances refused with ``InsufficientInstanceCapacity`` for type/zone pairs the
  test marked as out of capacity, and ``SpotMaxPriceTooLow`` when the max price is below
  the table (sent as HTTP 400 so botocore does not spend seconds retrying them; AWS
  sends capacity errors as 5xx, which the provider's retry config covers);
- GetConsoleOutput carrying the instance's SSH host keys in cloud-init's format, the
  way EC2 publishes them, so the runner can pin the key on first connect;
- a synchronous hand-off to the fleet after RunInstances / TerminateInstances /
  StopInstances / StartInstances, so an SSH endpoint exists when RunInstances returns
  and is gone when TerminateInstances returns.

And a small control API under ``/_sandbox/`` (JSON): ``GET health``, ``GET endpoints``,
``POST capacity`` ``{"instance_type", "zone" ("*" = all), "available"}``, ``POST interrupt``
``{"instance_id", "notice_s"}`` (a spot interruption, see `remote.sandbox.fleet`).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import threading
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Protocol
from urllib.parse import parse_qs

from remote.sandbox.prices import SANDBOX_SPOT_USD_PER_HOUR, sandbox_spot_price

_EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
_CHANGES_FLEET = frozenset({"RunInstances", "TerminateInstances", "StopInstances", "StartInstances"})
_REGION_IN_AUTH = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/ec2/")

StartResponse = Callable[..., Any]


class FleetControl(Protocol):
    """What the front needs from the daemon's fleet."""

    def sync_now(self) -> None:
        """Bring SSH hosts in line with moto's instances before returning."""

    def console_output(self, instance_id: str) -> str | None:
        """The console text for a sandbox instance, or None to let moto answer."""

    def interrupt(self, instance_id: str, notice_s: float) -> None:
        """Start a spot interruption of the instance."""

    def endpoints(self) -> dict[str, Any]:
        """The SSH endpoint of every live instance, by instance id."""


class Ec2Front:
    """WSGI middleware around moto's app (see the module docstring)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], fleet: FleetControl) -> None:
        self.app = app
        self.fleet = fleet
        self._lock = threading.Lock()
        self._no_capacity: set[tuple[str, str]] = set()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_sandbox/"):
            return self._control(path[len("/_sandbox/") :], environ, start_response)
        params, region = self._ec2_params(environ)
        action = params.get("Action") if params else None
        if params is None:
            return self._pass_through(environ, start_response, action)
        if action == "DescribeSpotPriceHistory":
            return _xml(start_response, 200, _spot_history_xml(params, region))
        if action == "RunInstances":
            refusal = self._refusal(params)
            if refusal:
                return _xml(start_response, 400, _error_xml(*refusal))
        if action == "GetConsoleOutput":
            text = self.fleet.console_output(params.get("InstanceId", ""))
            if text is not None:
                return _xml(start_response, 200, _console_xml(params["InstanceId"], text))
        return self._pass_through(environ, start_response, action)

    def _pass_through(
        self, environ: dict[str, Any], start_response: StartResponse, action: str | None
    ) -> Iterable[bytes]:
        """The request as moto answers it (the fleet follows the EC2 calls that change it)."""
        body = self.app(environ, start_response)
        if action in _CHANGES_FLEET:
            body = list(body)  # let moto finish before the fleet looks at the result
            self.fleet.sync_now()
        return body

    # --- capacity -----------------------------------------------------------------------

    def set_capacity(self, instance_type: str, zone: str, available: bool) -> None:
        with self._lock:
            (self._no_capacity.discard if available else self._no_capacity.add)((instance_type, zone))

    def _refusal(self, params: dict[str, str]) -> tuple[str, str] | None:
        itype = params.get("InstanceType", "")
        zone = params.get("Placement.AvailabilityZone", "")
        with self._lock:
            if (itype, zone) in self._no_capacity or (itype, "*") in self._no_capacity:
                return (
                    "InsufficientInstanceCapacity",
                    f"We currently do not have sufficient {itype} capacity in the Availability Zone "
                    f"you requested ({zone or 'any'}). (sandbox)",
                )
        max_price = params.get("InstanceMarketOptions.SpotOptions.MaxPrice")
        spot = sandbox_spot_price(itype, zone) if zone else None
        if max_price and spot is not None and float(max_price) < spot:
            return (
                "SpotMaxPriceTooLow",
                f"Your Spot request price of {max_price} is lower than the minimum required "
                f"Spot request fulfillment price of {spot:.4f}. (sandbox)",
            )
        return None

    # --- control API --------------------------------------------------------------------

    def _control(self, name: str, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            body = _read_body(environ)
            data = json.loads(body or b"{}")
            if name == "health":
                return _json(start_response, 200, {"ok": True, "pid": os.getpid()})
            if name == "endpoints":
                return _json(start_response, 200, {"pid": os.getpid(), "hosts": self.fleet.endpoints()})
            if name == "capacity" and environ.get("REQUEST_METHOD") == "POST":
                self.set_capacity(
                    str(data["instance_type"]), str(data.get("zone", "*")), bool(data.get("available", False))
                )
                return _json(start_response, 200, {"ok": True})
            if name == "interrupt" and environ.get("REQUEST_METHOD") == "POST":
                self.fleet.interrupt(str(data["instance_id"]), float(data.get("notice_s", 2.0)))
                return _json(start_response, 200, {"ok": True})
            return _json(start_response, 404, {"error": f"no sandbox control {name!r}"})
        except (KeyError, ValueError, TypeError) as exc:
            return _json(start_response, 400, {"error": f"bad control request: {exc}"})
        except LookupError as exc:  # unknown instance
            return _json(start_response, 404, {"error": str(exc)})

    # --- parsing ----------------------------------------------------------------------

    @staticmethod
    def _ec2_params(environ: dict[str, Any]) -> tuple[dict[str, str] | None, str]:
        """The form parameters of an EC2 query-protocol request (body restored for moto)."""
        if environ.get("REQUEST_METHOD") != "POST":
            return None, ""
        if "x-www-form-urlencoded" not in environ.get("CONTENT_TYPE", ""):
            return None, ""
        auth = environ.get("HTTP_AUTHORIZATION", "")
        match = _REGION_IN_AUTH.search(auth)
        if not match:
            return None, ""
        body = _read_body(environ)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        params = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        return params, match.group(1)


def _read_body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return environ["wsgi.input"].read(length) if length else b""


def _indexed(params: dict[str, str], prefix: str) -> list[str]:
    return [v for k, v in sorted(params.items()) if re.fullmatch(rf"{re.escape(prefix)}\.\d+", k)]


def _spot_history_xml(params: dict[str, str], region: str) -> str:
    types = _indexed(params, "InstanceType") or sorted(SANDBOX_SPOT_USD_PER_HOUR)
    zones: list[str] | None = None
    i = 1
    while f"Filter.{i}.Name" in params:
        if params[f"Filter.{i}.Name"] == "availability-zone":
            zones = _indexed(params, f"Filter.{i}.Value")
        if params[f"Filter.{i}.Name"] == "instance-type":
            types = [t for t in types if t in _indexed(params, f"Filter.{i}.Value")]
        i += 1
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    items = []
    for itype in types:
        for letter, price in sorted(SANDBOX_SPOT_USD_PER_HOUR.get(itype, {}).items()):
            zone = f"{region}{letter}"
            if zones is not None and zone not in zones:
                continue
            items.append(
                f"<item><instanceType>{itype}</instanceType>"
                f"<productDescription>Linux/UNIX</productDescription>"
                f"<spotPrice>{price:.6f}</spotPrice><timestamp>{stamp}</timestamp>"
                f"<availabilityZone>{zone}</availabilityZone></item>"
            )
    return (
        f'<DescribeSpotPriceHistoryResponse xmlns="{_EC2_NS}"><requestId>{uuid.uuid4()}</requestId>'
        f"<spotPriceHistorySet>{''.join(items)}</spotPriceHistorySet></DescribeSpotPriceHistoryResponse>"
    )


def _console_xml(instance_id: str, text: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    output = base64.b64encode(text.encode()).decode("ascii")
    return (
        f'<GetConsoleOutputResponse xmlns="{_EC2_NS}"><requestId>{uuid.uuid4()}</requestId>'
        f"<instanceId>{instance_id}</instanceId><timestamp>{stamp}</timestamp>"
        f"<output>{output}</output></GetConsoleOutputResponse>"
    )


def _error_xml(code: str, message: str) -> str:
    return (
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    )


def _xml(start_response: StartResponse, status: int, text: str) -> list[bytes]:
    body = text.encode()
    start_response(
        f"{status} {'OK' if status == 200 else 'Error'}",
        [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _json(start_response: StartResponse, status: int, data: Any) -> list[bytes]:
    body = json.dumps(data).encode()
    start_response(
        f"{status} {'OK' if status == 200 else 'Error'}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]
