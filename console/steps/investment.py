"""The investment checklist's own steps (seed runbook 001): the data window, training both models,
publishing them behind their gate, and a dry run of the runtime loader.

``console run --checklist investment`` runs::

    investment-data     the newest --max-days partitions of the data bucket, checked, as the two
                        units' input files (REGIME-DAILY: the context table, HEALTH-DAILY: the
                        asset features); days the bucket lacks are fetched first (the daily
                        pipeline, `console.daily_data`) unless fill_missing is off
    launch, sync        as in the retrain checklist
    train               (`InvestmentTrain`) the regime and the health model through the run's
                        backend, one after the other, never here (the guard)
    upload, terminate   as in the retrain checklist
    investment-publish  the run's models, sha256-checked, into --output-dir; both model files to
                        the bucket's models/ and latest.json moved to them only if both passed their
                        gate (`runtime_checks.investment.publish`); skipped with --skip-upload
    investment-runtime  the runtime loader (`runtime_checks.investment.load_models`) against the
                        bucket, or with --skip-upload against the local folders: what it would
                        load, and its predictions for the newest day
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import Field, model_validator

from console.checklist.step import Step, StepContext, StepParams, StepResult, register
from console.daily_data import DATA_STORE, UNIVERSE, last_closed_day, read_window, run_days, write_partitions
from console.errors import StepFailed
from console.outputs import StepOutputs, UploadOutputs
from console.steps.train import Train, TrainStepParams
from training.families.investment.data import write_table

REGIME_UNIT = "REGIME-DAILY"
HEALTH_UNIT = "HEALTH-DAILY"
UNITS = {REGIME_UNIT: "regime", HEALTH_UNIT: "health"}
"""The checklist's two units (one model each) and the family that trains each."""
_STORE = r"^[A-Za-z0-9_./:~-]{1,400}$"


def bucket_url(bucket: str) -> str:
    """``--bucket``: a bucket name (S3, as in the seed), or a store URL (s3://, gs://, az://, a path)."""
    return bucket if "://" in bucket or bucket.startswith(("/", ".", "~")) else f"s3://{bucket}"


class BucketParams(StepParams):
    bucket: str = Field(DATA_STORE.removeprefix("s3://"), pattern=_STORE)
    """The data bucket: the daily partitions, and ``models/`` with ``latest.json``."""


class InvestmentDataParams(BucketParams):
    max_days: int = Field(365, ge=160, le=3000)
    """Days of data; the regime model needs at least about 153 (window 5, horizon 10, a 20% test part)."""
    assets: list[str] = Field(default_factory=lambda: list(UNIVERSE), min_length=2)
    fill_missing: bool = True


class InvestmentDataOutputs(StepOutputs):
    days: int
    first: str
    last: str
    filled: int = 0


@register
class InvestmentData(Step):
    """The data window from the bucket, checked, as the two units' input files."""

    name = "investment-data"
    Params = InvestmentDataParams
    Outputs = InvestmentDataOutputs

    def plan(self, ctx: StepContext) -> str:
        p = ctx.params
        fill = "; fetch the days it lacks from Stooq, FRED and GDELT first" if p.fill_missing else ""
        return f"read the newest {p.max_days} days of context and asset features from {bucket_url(p.bucket)}{fill}"

    def run(self, ctx: StepContext) -> StepResult:
        p = ctx.params
        store = ctx.resources.store_at(bucket_url(p.bucket))
        last = last_closed_day()
        work = Path(ctx.run_dir) / "investment-data"
        filled = 0
        try:
            context, features, days = read_window(store, last, p.max_days, work)
        except Exception as exc:  # noqa: BLE001 - too few days, a gap or NaN: fill when allowed, else say so
            if not p.fill_missing:
                raise
            ctx.log.info("the bucket's window is not usable (%s); filling it", exc)
            days = []
        if len(days) < p.max_days and p.fill_missing:
            built = run_days(ctx.resources, p.assets, last, p.max_days)
            filled = len(write_partitions(store, built)) // 2
            ctx.log.info("filled %d day(s) %s..%s (%s)", filled, built.days[0], built.days[-1], built.seconds)
            # The whole window was just built and checked: it is what the bucket now holds.
            context = write_table(built.context, work / "context.parquet")
            features = write_table(built.features, work / "features.parquet")
            days = list(built.days)
        if len(days) < p.max_days:
            raise StepFailed(
                f"the data bucket has {len(days)} of the {p.max_days} days asked for",
                hint="run `console data backfill` or lower --max-days",
            )
        features_dir = ctx.resources.paths.features
        features_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(context, features_dir / f"{REGIME_UNIT}.parquet")
        shutil.copyfile(features, features_dir / f"{HEALTH_UNIT}.parquet")
        return StepResult.ok(
            f"{len(days)} days {days[0]}..{days[-1]} checked ({filled} filled from the sources)",
            outputs=InvestmentDataOutputs(days=len(days), first=days[0], last=days[-1], filled=filled),
        )


class InvestmentTrainParams(TrainStepParams):
    """The train step's parameters plus the seed's model choices; the two units and their
    families' parameters follow from them."""

    regime_type: Literal["gru", "transformer"] = "gru"
    health_type: Literal["autoencoder", "vae"] = "autoencoder"
    regime_batch_size: int = Field(32, ge=1, le=4096)
    health_batch_size: int = Field(64, ge=1, le=4096)
    unit_families: dict[str, str] = Field(default_factory=lambda: dict(UNITS))

    @model_validator(mode="before")
    @classmethod
    def _families(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        unknown = [s for s in data.get("symbols") or () if s not in UNITS]
        if unknown:
            raise ValueError(f"the investment checklist trains {', '.join(UNITS)}, not {', '.join(map(str, unknown))}")
        fields = cls.model_fields
        pick = {k: data.get(k, fields[k].default) for k in ("epochs", "regime_type", "health_type")}
        own = {k: dict(v) for k, v in dict(data.get("family_params") or {}).items() if k in ("regime", "health")}
        regime = {
            "model_type": pick["regime_type"],
            "epochs": pick["epochs"],
            "batch_size": data.get("regime_batch_size", fields["regime_batch_size"].default),
        }
        health = {
            "model_type": pick["health_type"],
            "epochs": pick["epochs"],
            "batch_size": data.get("health_batch_size", fields["health_batch_size"].default),
        }
        family_params = {"regime": {**own.get("regime", {}), **regime}, "health": {**own.get("health", {}), **health}}
        return {**data, "family": "regime", "family_params": family_params}


@register
class InvestmentTrain(Train):
    """Both models through the run's backend (never here)."""

    name = "investment-train"
    Params = InvestmentTrainParams  # type: ignore[assignment]  # a narrower Params: Train reads only its own fields

    def plan(self, ctx: StepContext) -> str:
        p = ctx.params
        return (
            f"train the regime model ({p.regime_type}) and the health model ({p.health_type}), up to {p.epochs} "
            f"epochs each with early stopping, on the {p.backend} backend, one after the other"
        )


class PublishParams(BucketParams):
    skip_upload: bool = False
    output_dir: str | None = Field(None, pattern=_STORE)
    symbols: list[str] = Field(default_factory=lambda: list(UNITS), min_length=1)
    """The units trained (`console train regime|health` trains one: nothing can be published)."""


class PublishOutputs(StepOutputs):
    folders: dict[str, str]
    version: str = ""
    promoted: bool = False
    reasons: list[str] = Field(default_factory=list)


def _short(reasons: tuple[str, ...]) -> str:
    """``regime: judged samples (test): 37 vs 50 - FAIL`` -> ``regime: judged samples (test)``."""
    return "; ".join(line.split(": ")[0] + ": " + line.split(": ")[1] for line in reasons if ": " in line)


def _newest(root: Path, unit: str) -> Path:
    folders = sorted(p for p in (root / "models" / unit).glob("*") if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise StepFailed(f"the run's artifacts hold no {unit} model", hint="rerun the train and upload steps")
    return folders[-1]


@register
class InvestmentPublish(Step):
    """The run's two models home, then to the bucket behind their gate."""

    name = "investment-publish"
    Params = PublishParams
    Outputs = PublishOutputs

    def plan(self, ctx: StepContext) -> str:
        p = ctx.params
        if p.skip_upload:
            return (
                "download both models (sha256 checked) into the output directory; --skip-upload: nothing to the bucket"
            )
        return (
            f"download both models (sha256 checked), upload them to {bucket_url(p.bucket)}/models and move "
            "latest.json to them only if both passed their gate"
        )

    def run(self, ctx: StepContext) -> StepResult:
        from runtime_checks.investment import RecordedVerdict, publish

        p = ctx.params
        uploaded = ctx.output_of("upload", UploadOutputs)
        if uploaded is None:
            raise StepFailed("no uploaded version of this run's models", hint="run the upload step first")
        out = Path(p.output_dir).expanduser() if p.output_dir else Path(ctx.run_dir) / "models"
        staging = Path(tempfile.mkdtemp(prefix="investment-", dir=ctx.run_dir))
        try:
            root = ctx.resources.artifact_store().download_version(uploaded.version, staging)
            folders: dict[str, Path] = {}
            for unit, family in UNITS.items():
                if unit not in p.symbols:
                    continue
                target = out / family
                if target.exists():
                    shutil.rmtree(target)
                shutil.copytree(_newest(Path(root), unit), target)
                folders[family] = target
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        verdicts = {f: RecordedVerdict.read(folder) for f, folder in folders.items()}
        lines = [f"{f}: {line}" for f, v in verdicts.items() for line in v.lines()]
        shown = {k: str(v) for k, v in folders.items()}
        if p.skip_upload:
            return StepResult.skipped(f"--skip-upload: models in {out}, nothing sent to the bucket", {"gate": lines})
        if len(folders) < len(UNITS):
            raise StepFailed("latest.json needs both models; this run trained one", hint="use --skip-upload")
        metrics = {f: json.loads((folder / "metrics.json").read_text()) for f, folder in folders.items()}
        store = ctx.resources.store_at(bucket_url(p.bucket) + "/models")
        store.ensure_bucket()
        done = publish(store, folders, verdicts, metrics)
        for line in lines:
            ctx.log.info("%s", line)
        outputs = PublishOutputs(
            folders=shown, version=done.version, promoted=done.promoted, reasons=list(done.reasons)
        )
        if done.promoted:
            return StepResult.ok(f"latest.json now points at version {done.version}", {"gate": lines}, outputs=outputs)
        why = _short(done.reasons)
        ctx.emit("investment.not_promoted", f"latest.json unchanged: {why}", version=done.version)
        return StepResult.ok(
            f"version {done.version} uploaded; latest.json unchanged: the gate failed ({why}; see the log)",
            {"gate": lines},
            outputs=outputs,
        )


class RuntimeParams(BucketParams):
    skip_upload: bool = False
    output_dir: str | None = Field(None, pattern=_STORE)


class RuntimeOutputs(StepOutputs):
    source: dict[str, str]
    version: str | None = None
    reasons: dict[str, str] = Field(default_factory=dict)
    regime_label: str = ""


@register
class InvestmentRuntime(Step):
    """A dry run of the operator's runtime loader: what it loads, and what it predicts."""

    name = "investment-runtime"
    Params = RuntimeParams
    Outputs = RuntimeOutputs

    def plan(self, ctx: StepContext) -> str:
        where = "the run's local models" if ctx.params.skip_upload else f"{bucket_url(ctx.params.bucket)}/models"
        return (
            f"load the models as the runtime would from {where} (baselines where it cannot) and predict the newest day"
        )

    def run(self, ctx: StepContext) -> StepResult:
        from runtime_checks.investment import RuntimeModels, load_models
        from training.families import get_family

        p = ctx.params
        features_dir = ctx.resources.paths.features
        context = pd.read_parquet(features_dir / f"{REGIME_UNIT}.parquet")
        assets = pd.read_parquet(features_dir / f"{HEALTH_UNIT}.parquet")
        newest = assets[assets["date"] == assets["date"].max()]
        if p.skip_upload:
            local = Path(p.output_dir).expanduser() if p.output_dir else Path(ctx.run_dir) / "models"
            folders = {f: str(local / f) for f in ("regime", "health")}
            loaded: dict[str, Any] = {}
            reasons: dict[str, str] = {}
            for family in ("regime", "health"):
                try:
                    loaded[family] = get_family(family).predictor(Path(folders[family]))
                except Exception as exc:  # noqa: BLE001 - the runtime's rule: fall back and say why
                    loaded[family], reasons[family] = get_family(family).baseline(None), str(exc).splitlines()[0]
            models = RuntimeModels(loaded["regime"], loaded["health"], None, reasons)
        else:
            with tempfile.TemporaryDirectory(dir=ctx.run_dir) as cache:
                models = load_models(ctx.resources.store_at(bucket_url(p.bucket) + "/models"), Path(cache))
        regime = models.regime.predict(context)
        health = models.health.predict(newest)
        best = max(health.items(), key=lambda kv: kv[1]["health_score"]) if health else None
        for line in models.lines():
            ctx.log.info("%s", line)
        day = pd.Timestamp(context["date"].max()).strftime("%Y-%m-%d")
        top = f"; healthiest {best[0]} ({best[1]['health_score']:.2f})" if best else ""
        sources = ", ".join(f"{f} {s}" for f, s in models.source.items())
        return StepResult.ok(
            f"runtime loads {sources} (version {models.version or 'none'}); {day}: {regime['regime_label']}{top}",
            {"runtime": models.lines()},
            outputs=RuntimeOutputs(
                source=models.source,
                version=models.version,
                reasons=dict(models.reasons),
                regime_label=str(regime["regime_label"]),
            ),
        )
