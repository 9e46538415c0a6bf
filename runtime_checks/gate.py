"""The pre-live gate: decide from check results, record a pass for the exact files, verify it.

A gate record pins the sha256 of every file in the model folders a runtime would load
and the feature hash of the spec the runtime builder uses now, with an expiry. It is
written next to the models (``<models_dir>/gate.json``), handed to the caller for the
state store, and to any extra sinks (S3 when the profile has a bucket); `verify_gate` may
read a remote copy back when the file next to the models is missing, and judges it by the
same rules. It is signed
with an HMAC whose key lives in the state directory (``gate.key``, mode 0600), so an
edited record (``"passed": true`` typed in by hand, a pushed-back expiry) never verifies.

`verify_gate` is what a live runtime calls before trading (``console gate verify`` and
``console live`` call it too). It returns the record only when all of these hold, and
raises `GateNotPassed` (exit 4) with the first reason otherwise:

- the record exists, its signature matches, and it matches the state store's copy;
- it is a pass, and has not expired;
- every symbol to trade was checked with a trained model (never a baseline);
- the model files are byte for byte the ones pinned (none changed, added or removed);
- the feature spec's hash is the one pinned.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from runtime_checks import models
from runtime_checks.checks import CheckResult
from runtime_checks.errors import CheckInputError, GateNotPassed, TamperedGateRecord
from training.atomic import atomic_path
from training.evidence import ALPHA, MIN_SAMPLES, MIN_TRADES, EvidenceRules
from training.registry import finite_json

RECORD_FORMAT = "retrain-console/gate/1"
KEY_NAME = "gate.key"
APP_NAME = "retrain-console"


@dataclass(frozen=True)
class GateCriteria:
    """What a dry run must show before anything goes live (defaults as documented in
    ``docs/methods.md``): the evidence rules of `training.evidence`, on bars after the
    model's test part, every significance test at ``max_p_value``."""

    min_samples: int = MIN_SAMPLES
    """Fewest non-overlapping out-of-sample samples judged."""
    min_trades: int = MIN_TRADES
    """Fewest trades the rule must open (zero trades never pass)."""
    min_auc: float = 0.5
    """Discrimination: the AUC must be above this, significantly (Mann-Whitney)."""
    min_hit_rate: float = 0.5
    """The hit rate of the rule that trades, on the decisions where it holds a position."""
    require_beat_baselines: bool = True
    """Paired McNemar test against each baseline on the same bars."""
    min_after_cost_return: float = 0.0
    """The after-cost result must be above this, significantly (block bootstrap)."""
    max_p_value: float = ALPHA
    """The significance level of every test above."""
    expiry_hours: float = 24.0

    def __post_init__(self) -> None:
        self.evidence_rules()  # refuses a level outside (0, 0.5) or zero trades

    def evidence_rules(self) -> EvidenceRules:
        return EvidenceRules(
            min_samples=int(self.min_samples),
            min_trades=int(self.min_trades),
            min_auc=float(self.min_auc),
            min_trade_hit_rate=float(self.min_hit_rate),
            min_net_return=float(self.min_after_cost_return),
            beat_baselines=bool(self.require_beat_baselines),
            alpha=float(self.max_p_value),
        )

    @classmethod
    def from_settings(cls, settings: Any) -> "GateCriteria":
        """From any object with these attribute names (the console's GateSettings); missing ones keep defaults."""
        known = {k: getattr(settings, k) for k in asdict(cls()) if hasattr(settings, k)}
        return cls(**known)


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict on a set of results: passed, or the reasons it did not."""

    passed: bool
    reasons: tuple[str, ...]


def decide(results: Iterable[CheckResult], symbols: Sequence[str], criteria: GateCriteria) -> GateDecision:
    """Apply the criteria to each symbol's alignment and dry-run results."""
    by_key = {(r.check, r.symbol): r for r in results}
    reasons: list[str] = []
    if not symbols:
        reasons.append("no symbols were checked")
    for r in by_key.values():
        if r.blocking and not r.passed and r.check not in ("alignment", "dryrun"):
            reasons.append(f"{r.symbol}: {r.check} failed")
    for s in symbols:
        align = by_key.get(("alignment", s))
        if align is None:
            reasons.append(f"{s}: alignment was not checked")
        elif not align.passed:
            reasons.append(f"{s}: features are misaligned")
        run = by_key.get(("dryrun", s))
        if run is None:
            reasons.append(f"{s}: no dry run")
            continue
        reasons.extend(judge_dryrun(s, run.figures, criteria))
    return GateDecision(not reasons, tuple(reasons))


def judge_dryrun(symbol: str, f: Mapping[str, Any], criteria: GateCriteria) -> list[str]:
    """Why one symbol's dry-run figures fail the criteria (empty: they meet them).

    Each reason names the figure, its threshold and its p-value or interval."""
    s = symbol
    if not f.get("trained"):
        return [f"{s}: no trained model (a baseline never passes the gate)"]
    reasons: list[str] = []
    if f.get("degenerate"):
        reasons.append(f"{s}: predictions are degenerate ({f.get('degenerate_reason')})")
    evidence = f.get("evidence")
    if not isinstance(evidence, Mapping):
        return reasons + [f"{s}: the dry run measured no evidence (an older dry run); run `console dryrun` again"]
    reasons += [f"{s}: {line}" for ok, line in criteria.evidence_rules().judge(evidence) if not ok]
    return reasons


def verdict_lines(symbol: str, f: Mapping[str, Any], criteria: GateCriteria) -> list[str]:
    """Every rule's line for one symbol, pass or fail (what `console dryrun` prints)."""
    evidence = f.get("evidence")
    if not isinstance(evidence, Mapping):
        return []
    return [f"{symbol}: {line} - {'pass' if ok else 'FAIL'}" for ok, line in criteria.evidence_rules().judge(evidence)]


# -- the key --------------------------------------------------------------------------------


def default_key_file() -> Path:
    """``$RC_GATE_KEY_FILE``, else ``gate.key`` in ``$RC_STATE_DIR`` or the user state dir."""
    if os.environ.get("RC_GATE_KEY_FILE"):
        return Path(os.environ["RC_GATE_KEY_FILE"]).expanduser()
    if os.environ.get("RC_STATE_DIR"):
        return Path(os.environ["RC_STATE_DIR"]).expanduser() / KEY_NAME
    import platformdirs

    return platformdirs.user_state_path(APP_NAME) / KEY_NAME


def _read_key(key_file: Path, *, create: bool) -> bytes:
    key_file = Path(key_file)
    if create and not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first; read theirs
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    try:
        mode = key_file.stat().st_mode
        text = key_file.read_text().strip()
    except FileNotFoundError:
        raise GateNotPassed(
            f"no gate key at {key_file}: no gate was recorded from this state dir; run `console dryrun`"
        ) from None
    except OSError as exc:
        raise GateNotPassed(f"cannot read the gate key {key_file} ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise GateNotPassed(f"gate key {key_file} is readable by others; run `chmod 600 {key_file}` and dry run again")
    if len(text) < 32:
        raise GateNotPassed(f"gate key {key_file} is malformed; delete it and run `console dryrun` again")
    return text.encode()


def _sign(record: Mapping[str, Any], key: bytes) -> str:
    body = {k: v for k, v in record.items() if k != "signature"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


# -- recording --------------------------------------------------------------------------------


def combined_feature_hash(per_symbol: Mapping[str, str]) -> str:
    """One hash over every symbol's feature hash (what the state store's column holds)."""
    canonical = json.dumps(dict(sorted(per_symbol.items())), separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def pinned_models(models_dir: Path, symbols: Sequence[str]) -> tuple[dict[str, str | None], dict[str, str]]:
    """The folder (relative) each symbol's runtime would load, and the sha256 of every file in them."""
    root = models.models_root(models_dir)
    folders = {s: models.model_folder(root, s) for s in symbols}
    rel = {s: (f.relative_to(root).as_posix() if f else None) for s, f in folders.items()}
    return rel, models.model_file_hashes(root, [f for f in folders.values() if f is not None])


def record_gate(
    models_dir: Path,
    results: Sequence[CheckResult],
    *,
    symbols: Sequence[str],
    feature_hashes: Mapping[str, str],
    criteria: GateCriteria = GateCriteria(),
    key_file: Path | None = None,
    now: float | None = None,
    sinks: Sequence[Callable[[str, bytes], None]] = (),
) -> dict[str, Any]:
    """Decide, then write the signed record next to the models (and to each sink); return it.

    A failed decision is recorded too (so `console gate status` can say why), but it can
    never verify. ``sinks`` receive ``("gate.json", body)``: the hook for an S3 copy.
    """
    now = time.time() if now is None else now
    root = models.models_root(models_dir)
    decision = decide(results, symbols, criteria)
    folders, hashes = pinned_models(root, symbols)
    record: dict[str, Any] = {
        "format": RECORD_FORMAT,
        "id": uuid.uuid4().hex,
        "created_at": now,
        "expires_at": now + criteria.expiry_hours * 3600.0,
        "passed": decision.passed,
        "reasons": list(decision.reasons),
        "models_dir": str(root),
        "symbols": sorted(symbols),
        "model_folders": folders,
        "trained": {r.symbol: bool(r.figures.get("trained")) for r in results if r.check == "dryrun"},
        "model_hashes": hashes,
        "feature_hashes": dict(sorted(feature_hashes.items())),
        "feature_hash": combined_feature_hash(feature_hashes),
        "criteria": asdict(criteria),
        # Which bars each verdict judged: after the model's test part, so disjoint from the
        # training, validation and test parts that fitted, stopped and promoted it.
        "judged_bars": {r.symbol: r.figures.get("judged_bars") for r in results if r.check == "dryrun"},
        "verdicts": {r.symbol: verdict_lines(r.symbol, r.figures, criteria) for r in results if r.check == "dryrun"},
        "results": [r.to_dict() for r in results],
    }
    # NaN (a hit rate over no samples) becomes null, so the record reads back equal to itself.
    record = finite_json(record)
    record["signature"] = _sign(record, _read_key(key_file or default_key_file(), create=True))
    body = json.dumps(record, indent=2, sort_keys=True, default=str).encode()
    _write_atomic(root / models.GATE_FILE, body)
    for sink in sinks:
        sink(models.GATE_FILE, body)
    return record


def _write_atomic(path: Path, body: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(body)


# -- verifying --------------------------------------------------------------------------------


def read_record(models_dir: Path) -> dict[str, Any] | None:
    """The gate record next to the models, unverified (None when there is none)."""
    try:
        root = models.models_root(models_dir)
    except CheckInputError as exc:
        raise GateNotPassed(str(exc)) from None
    path = root / models.GATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise TamperedGateRecord(
            f"gate record {path} is not valid JSON; it was edited or torn, run `console dryrun` again"
        ) from None
    if not isinstance(data, dict):
        raise TamperedGateRecord(f"gate record {path} is not a gate record; run `console dryrun` again")
    return data


def current_feature_hash(symbol: str, timeframe: str = "1m") -> str:
    """The hash of the feature spec the runtime builder uses for ``symbol`` today (on
    ``timeframe`` candles: the model's)."""
    from runtime_checks.inputs import SpecFeatureBuilder

    return SpecFeatureBuilder(timeframes={symbol: timeframe}).spec(symbol).hash


def verify_gate(
    models_dir: Path,
    *,
    symbols: Sequence[str] | None = None,
    key_file: Path | None = None,
    feature_hash_of: Callable[[str], str] | None = None,
    state_copy: Mapping[str, Any] | None = None,
    remote_copy: Callable[[Path], tuple[str, Mapping[str, Any]] | None] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The valid pass for exactly these model files and feature spec; `GateNotPassed` (exit 4) otherwise.

    ``symbols`` are those the runtime will trade (every symbol in the models dir when
    None). ``state_copy`` is the state store's latest record: when it covers the same
    models dir it must be identical to the file. ``remote_copy(root)`` is asked only when
    there is no record next to the models (S3's copy: ``(where, record)`` or None); a
    copy from there is judged by exactly the same rules. Live runtimes call this before
    trading.
    """
    now = time.time() if now is None else now
    record = read_record(models_dir)
    root = models.models_root(models_dir)
    where: Any = root / models.GATE_FILE
    if record is None and remote_copy is not None:
        found = remote_copy(root)
        if found is not None:
            where, record = found[0], dict(found[1])
    if record is None:
        raise GateNotPassed(f"no gate record in {root}; run `console dryrun --models {root}` first")
    signature = record.get("signature")
    key = _read_key(key_file or default_key_file(), create=False)
    if not isinstance(signature, str) or not hmac.compare_digest(signature, _sign(record, key)):
        raise TamperedGateRecord(f"gate record {where} does not match its signature (edited, or from another state dir); "
                                 "run `console dryrun` again")  # fmt: skip
    if record.get("format") != RECORD_FORMAT:
        raise GateNotPassed(f"gate record {where} has an unknown format; run `console dryrun` again")
    # The signature stands for the whole record; comparing it (not every field) keeps the state
    # store's redaction of free text from reading as tampering.
    if (
        state_copy is not None
        and state_copy.get("models_dir") == record.get("models_dir")
        and (state_copy.get("id"), state_copy.get("signature")) != (record.get("id"), signature)
    ):
        raise TamperedGateRecord(f"gate record {where} differs from the state store's copy; run `console dryrun` again")
    if record.get("models_dir") != str(root):
        raise GateNotPassed(
            f"gate record {where} was made for {record.get('models_dir')}, not {root}; run `console dryrun` here"
        )
    if not record.get("passed"):
        first = (record.get("reasons") or ["unknown reason"])[0]
        raise GateNotPassed(f"the last dry run failed the gate: {first}")
    if now >= float(record["expires_at"]):
        ago = (now - float(record["expires_at"])) / 3600.0
        raise GateNotPassed(
            f"the gate pass expired {ago:.1f} h ago (at {utc_text(record['expires_at'])}); run `console dryrun` again"
        )
    wanted = sorted(symbols) if symbols is not None else models.symbols_in(root)
    if not wanted:
        raise GateNotPassed(f"no trained models in {root}; nothing can go live")
    unchecked = [s for s in wanted if s not in record.get("symbols", [])]
    if unchecked:
        raise GateNotPassed(f"{', '.join(unchecked)} not covered by the gate pass; run `console dryrun` for them")
    untrained = [s for s in record["symbols"] if not record.get("trained", {}).get(s)]
    if untrained:
        raise GateNotPassed(
            f"{', '.join(untrained)} ran on a baseline, not a trained model; the gate never passes that"
        )
    folders, hashes = pinned_models(root, record["symbols"])
    if folders != record["model_folders"]:
        changed = [s for s in folders if folders[s] != record["model_folders"].get(s)]
        raise GateNotPassed(
            f"the model folder for {', '.join(changed)} changed since the gate passed; run `console dryrun` again"
        )
    pinned = record["model_hashes"]
    for name in sorted(set(pinned) | set(hashes)):
        if name not in hashes:
            raise GateNotPassed(f"model file {name} is gone since the gate passed; download the models again")
        if name not in pinned:
            raise GateNotPassed(f"model file {name} appeared since the gate passed; run `console dryrun` again")
        if hashes[name] != pinned[name]:
            raise GateNotPassed(f"model file {name} changed since the gate passed (sha256 {hashes[name][:12]}, "
                                f"pinned {pinned[name][:12]}); run `console dryrun` again")  # fmt: skip
    if feature_hash_of is None:  # the runtime builder's spec, on the candles each model was trained on

        def feature_hash_of(symbol: str) -> str:
            return current_feature_hash(symbol, models.model_timeframe(models_dir, symbol))

    for s in record["symbols"]:
        current = feature_hash_of(s)
        if current != record["feature_hashes"].get(s):
            raise GateNotPassed(f"the feature spec for {s} changed since the gate passed ({current[:19]}, pinned "
                                f"{str(record['feature_hashes'].get(s))[:19]}); rebuild features, retrain and dry run again")  # fmt: skip
    return record


def describe(record: Mapping[str, Any] | None, *, now: float | None = None) -> list[str]:
    """Lines for `console gate status`: what the record pins and why it passes or not (unverified)."""
    if record is None:
        return ["no gate record yet; run `console dryrun`"]
    now = time.time() if now is None else now
    lines = [
        f"gate record {record.get('id', '?')}: {'PASS' if record.get('passed') else 'FAIL'} for {', '.join(record.get('symbols', []))}",
        f"  models: {record.get('models_dir')}",
        f"  recorded {utc_text(record.get('created_at', 0))}, expires {utc_text(record.get('expires_at', 0))}"
        + (" (expired)" if now >= float(record.get("expires_at", 0)) else ""),
        f"  feature hash {record.get('feature_hash')}",
        f"  {len(record.get('model_hashes', {}))} model files pinned",
    ]
    lines += [f"  why not: {r}" for r in record.get("reasons", [])]
    lines += [f"  {r['summary']}" for r in record.get("results", [])]
    return lines


def utc_text(ts: float) -> str:
    return datetime.fromtimestamp(float(ts), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
