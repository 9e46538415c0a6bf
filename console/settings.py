"""Settings: defaults < config file < environment < command-line flags.

- The config file is ``console.toml``, found through ``--config``, then ``RC_CONFIG``,
  then ``./console.toml``, then the user config dir. A missing file named explicitly is
  an error; a missing default one is not.
- Environment variables take the ``RC_`` prefix (nested sections with ``__``:
  ``RC_WATCHDOG__INTERVAL_S=5``), and the names the original runbooks use also work:
  AWS_REGION, SAGEMAKER_ROLE_ARN, SAGEMAKER_S3_BUCKET, SAGEMAKER_INSTANCE_TYPE,
  SAGEMAKER_MAX_RUNTIME_HOURS, CLOUD_TRAINING_PROVIDER, COINGECKO_API_KEY,
  TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID.
- Two profiles: ``sandbox`` (the default; everything local) and ``aws``.

`describe_settings` reports every effective value with the layer it came from, secrets
masked, for ``console config show``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from console.errors import ConfigError
from console.inputs import read_regular_file
from console.redact import MASK, register_environment_secrets, register_secret
from console.url_secrets import mask_urls, url_secrets

APP_NAME = "retrain-console"
PROFILES = ("sandbox", "aws")


def default_state_dir() -> Path:
    return platformdirs.user_state_path(APP_NAME)


def _env(*names: str) -> AliasChoices:
    """Accept a field by its name (config file, flags) or any of these environment names."""
    return AliasChoices(*names)


class Section(BaseModel):
    """A nested group of settings; unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class CloudSettings(Section):
    """Where and what the console launches."""

    instance_type: str = "g5.xlarge"
    alt_instance_type: str = "g4dn.xlarge"
    ami_name_pattern: str = "Deep Learning*"
    max_spot_price_usd: float | None = Field(default=None, gt=0, le=1000)
    """Highest spot price per hour to bid; on-demand price when unset."""
    owner: str = Field(default_factory=lambda: os.environ.get("USER", "operator"))
    ssh_user: str = "ubuntu"
    static_hosts: list[dict[str, Any]] = Field(default_factory=list)
    """For the static provider: [{address, port, user, key}]."""


class BudgetSettings(Section):
    """Money limits the watchdog enforces (US dollars)."""

    run_usd: float = Field(default=10.0, gt=0, le=1_000_000)
    daily_usd: float = Field(default=25.0, gt=0, le=1_000_000)
    instance_usd: float = Field(default=15.0, gt=0, le=1_000_000)


class WatchdogSettings(Section):
    """How the watchdog decides an instance has outlived its purpose."""

    autostart: bool = True
    """Start the background watchdog whenever an instance is launched and none is running."""
    interval_s: float = Field(default=15.0, ge=0.1, le=3600)
    """Seconds between passes: at least 0.1 (a smaller one busy-loops against the provider's API)."""
    heartbeat_timeout_s: float = Field(default=300.0, gt=0, le=7 * 86400)
    idle_timeout_s: float = Field(default=1800.0, gt=0, le=7 * 86400)
    upload_grace_s: float = Field(default=600.0, ge=0, le=7 * 86400)


class SandboxSettings(Section):
    """The built-in sandbox's market simulator (sandbox profile only)."""

    market_mode: Literal["structured", "random_walk"] = "structured"
    """``structured`` has documented trends a model can learn; on ``random_walk`` nothing beats
    chance and the gate must fail (see remote/sandbox/market.py)."""
    market_seed: int = Field(default=7, ge=0, le=2**31 - 1)
    batch_running: int = Field(default=2, ge=1, le=64)
    """Batch children the sandbox runs at once: its compute environment's vCPUs. Each child is
    a process on this machine; children that mostly wait on the exchange's per-host rate
    limit (the engine's fetch) can outnumber the cores. Read when the sandbox starts."""


class FeatureSettings(Section):
    """Feature counts the verify-counts step expects, and which symbols take multi-timeframe features."""

    expected_counts: dict[str, int] = Field(default_factory=lambda: {"BTC-USD": 73, "ETH-USD": 54, "SOL-USD": 73})
    multi_timeframe_symbols: list[str] = Field(default_factory=lambda: ["BTC-USD", "SOL-USD"])
    coingecko_ids: dict[str, str] = Field(
        default_factory=lambda: {"BTC-USD": "bitcoin", "ETH-USD": "ethereum", "SOL-USD": "solana"}
    )


class GateSettings(Section):
    """Evidence the dry run must show, on bars after the model's test part, before anything
    goes live (`runtime_checks.gate.GateCriteria`; docs/methods.md says what each tests)."""

    expiry_hours: float = Field(default=24.0, gt=0, le=24 * 365)
    min_samples: int = Field(default=100, ge=1, le=10_000_000)
    """Fewest non-overlapping out-of-sample samples judged."""
    min_trades: int = Field(default=30, ge=0, le=10_000_000)
    """Fewest trades the rule that trades must open (zero trades never pass)."""
    min_auc: float = Field(default=0.5, ge=0, le=1)
    """Discrimination: AUC above this, significantly (Mann-Whitney)."""
    min_hit_rate: float = Field(default=0.5, ge=0, le=1)
    """Hit rate of the rule that trades, on the decisions where it holds a position."""
    require_beat_baselines: bool = True
    min_after_cost_return: float = 0.0
    max_p_value: float = Field(default=0.05, gt=0.0, lt=0.5)
    """Significance level of every test the gate runs (binomial, McNemar, Mann-Whitney, bootstrap)."""
    champion_days: float = Field(default=30.0, gt=0.0, le=3650)
    """A champion older than this no longer holds its place: a failed retrain leaves no champion."""


def _default_costs() -> dict[str, dict[str, float]]:
    return {"default": {"fee_bps": 10.0, "spread_bps": 2.0, "slippage_bps": 2.0}, "BTC-USD": {"spread_bps": 1.0}}


class TrainingSettings(Section):
    """Trading costs for after-cost evaluation, and the gates a new model must pass to become champion."""

    costs: dict[str, dict[str, float]] = Field(default_factory=_default_costs)
    """Per symbol (and ``default``): fee_bps, spread_bps, slippage_bps."""
    promotion_gates: dict[str, Any] = Field(
        default_factory=lambda: {"min_net_return": 0.0, "min_trades": 30, "beat_baselines": True}
    )


class Settings(BaseSettings):
    """The console's effective settings. Build with `load_settings`, not directly."""

    model_config = SettingsConfigDict(
        env_prefix="RC_",
        env_nested_delimiter="__",
        extra="forbid",
        populate_by_name=True,
        validate_default=True,
        allow_inf_nan=False,
    )

    profile: Literal["sandbox", "aws"] = "sandbox"
    state_dir: Path = Field(default_factory=default_state_dir)
    data_dir: Path | None = None
    """Candles, fundamentals, features and models; ``<state_dir>/data`` when unset."""

    aws_region: str = Field("us-east-1", validation_alias=_env("aws_region", "RC_AWS_REGION", "AWS_REGION"))
    sagemaker_role_arn: str | None = Field(
        None, validation_alias=_env("sagemaker_role_arn", "RC_SAGEMAKER_ROLE_ARN", "SAGEMAKER_ROLE_ARN")
    )
    s3_bucket: str | None = Field(None, validation_alias=_env("s3_bucket", "RC_S3_BUCKET", "SAGEMAKER_S3_BUCKET"))
    sagemaker_instance_type: str | None = Field(
        None,
        validation_alias=_env("sagemaker_instance_type", "RC_SAGEMAKER_INSTANCE_TYPE", "SAGEMAKER_INSTANCE_TYPE"),
    )
    max_runtime_hours: float = Field(
        4.0,
        gt=0,
        le=24 * 28,  # SageMaker's own ceiling; a longer one overflows the dead-man switch's arithmetic
        validation_alias=_env("max_runtime_hours", "RC_MAX_RUNTIME_HOURS", "SAGEMAKER_MAX_RUNTIME_HOURS"),
    )
    cloud_provider: Literal["ec2", "static", "sagemaker", "local"] = Field(
        "ec2", validation_alias=_env("cloud_provider", "RC_CLOUD_PROVIDER", "CLOUD_TRAINING_PROVIDER")
    )
    training_user_name: str | None = Field(
        None, validation_alias=_env("training_user_name", "RC_TRAINING_USER_NAME", "TRAINING_USER_NAME")
    )
    """The IAM user `console infra deploy` attaches the training policy to."""
    aws_access_key_id: SecretStr | None = Field(None, validation_alias=_env("aws_access_key_id", "AWS_ACCESS_KEY_ID"))
    aws_secret_access_key: SecretStr | None = Field(
        None, validation_alias=_env("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY")
    )
    coingecko_api_key: SecretStr | None = Field(
        None, validation_alias=_env("coingecko_api_key", "RC_COINGECKO_API_KEY", "COINGECKO_API_KEY")
    )
    telegram_bot_token: SecretStr | None = Field(
        None, validation_alias=_env("telegram_bot_token", "RC_TELEGRAM_BOT_TOKEN", "TELEGRAM_BOT_TOKEN")
    )
    fred_api_key: SecretStr | None = Field(
        None, validation_alias=_env("fred_api_key", "RC_FRED_API_KEY", "FRED_API_KEY")
    )
    """FRED's key for the Treasury yields of `console data daily` (sent only to FRED)."""
    telegram_chat_id: str | None = Field(
        None, validation_alias=_env("telegram_chat_id", "RC_TELEGRAM_CHAT_ID", "TELEGRAM_CHAT_ID")
    )
    notify_urls: list[str] = Field(default_factory=list)
    """Apprise URLs for notifications (Telegram is added from the token and chat id)."""

    coinbase_url: str | None = None
    """Coinbase Exchange API base; the sandbox's market simulator when unset on the sandbox profile."""
    coingecko_url: str | None = None
    """CoinGecko API base; the sandbox's market simulator when unset on the sandbox profile."""
    aws_endpoint_url: str | None = None
    """AWS endpoint; the sandbox's moto server when unset on the sandbox profile."""
    daily_urls: dict[str, str] = Field(default_factory=dict)
    """Bases of the daily sources (``stooq``, ``fred``, ``gdelt``); the sandbox's market simulator
    for those unset on the sandbox profile, else the public services."""

    cloud: CloudSettings = Field(default_factory=CloudSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    watchdog: WatchdogSettings = Field(default_factory=WatchdogSettings)
    sandbox: SandboxSettings = Field(default_factory=lambda: SandboxSettings.model_validate({}))
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    backends: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Options of each training backend, by name (``[backends.sagemaker]`` ...), handed to it as
    `remote.backends.base.BackendContext.options`."""

    @field_validator("state_dir", "data_dir", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty (it would put the state in the current directory)")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags arrive as init kwargs; the config file's values are merged into them by
        # `load_settings` *under* the flags, so the order here is flags+file, then env.
        # pydantic-settings gives earlier sources priority, hence env must win over the
        # file: `load_settings` resolves that by layering itself (see there).
        return (init_settings,)

    @property
    def data_root(self) -> Path:
        return self.data_dir if self.data_dir is not None else self.state_dir / "data"

    @property
    def is_sandbox(self) -> bool:
        return self.profile == "sandbox"


SECRET_FIELDS = (
    "aws_access_key_id",
    "aws_secret_access_key",
    "coingecko_api_key",
    "telegram_bot_token",
    "fred_api_key",
)


@dataclass(frozen=True)
class SettingValue:
    """One effective setting for `console config show`."""

    name: str
    value: str
    source: str
    """default, file (with the path), env (with the variable name), or flag."""


def find_config_file(explicit: str | os.PathLike[str] | None, environ: dict[str, str]) -> Path | None:
    """The config file to read, or None. An explicitly named file that is missing is an error."""
    named = explicit or environ.get("RC_CONFIG")
    if named:
        path = Path(named).expanduser()
        if not path.exists():
            how = "--config" if explicit else "RC_CONFIG"
            raise ConfigError(f"config file {path} does not exist (named by {how})", hint="check the path")
        return path
    for candidate in (Path.cwd() / "console.toml", platformdirs.user_config_path(APP_NAME) / "console.toml"):
        if candidate.is_file():
            return candidate
    return None


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a TOML config file; a syntax error names the line and column."""
    data = read_regular_file(path, what="config file", error=ConfigError)
    try:
        return tomllib.loads(data.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error {exc}", hint="fix the file or pass another --config") from None
    except UnicodeDecodeError:  # tomllib decodes UTF-8 itself; a binary file is not TOML
        raise ConfigError(
            f"{path}: not a UTF-8 text file, so not TOML", hint="fix the file or pass another --config"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None


def _env_layer(environ: dict[str, str]) -> dict[str, Any]:
    """The values the environment provides, keyed by field name, through pydantic-settings."""
    saved = dict(os.environ)
    try:
        if environ is not os.environ:
            os.environ.clear()
            os.environ.update(environ)
        source = EnvSettingsSource(Settings, case_sensitive=False, env_prefix="RC_", env_nested_delimiter="__")
        try:
            raw = source()
        except SettingsError as exc:  # a section given as JSON that is not JSON (RC_WATCHDOG='{...')
            section = str(exc).partition('field "')[2].partition('"')[0] or "a setting"
            raise ConfigError(
                f"bad setting {section} from the environment: its value is not valid JSON",
                hint=f"set one key at a time (RC_{section.upper()}__KEY=VALUE) or give a JSON object",
            ) from None
    finally:
        if environ is not os.environ:
            os.environ.clear()
            os.environ.update(saved)
    # The source keys aliased fields by the alias it matched; map them back to field names.
    by_alias: dict[str, str] = {}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        for choice in getattr(alias, "choices", ()) or ():
            by_alias[str(choice).lower()] = name
    out: dict[str, Any] = {}
    for key, value in raw.items():
        out[by_alias.get(key.lower(), key)] = value
    out.pop("config", None)
    return out


def _env_origin(field_name: str, environ: dict[str, str]) -> str:
    """Which environment variable set this field (for `config show`)."""
    field = Settings.model_fields.get(field_name)
    names = [f"RC_{field_name.upper()}"]
    alias = field.validation_alias if field is not None else None
    if isinstance(alias, AliasChoices):
        names = [str(c) for c in alias.choices if str(c).isupper()] or names
    for name in names:
        if name in environ:
            return name
    prefix = f"RC_{field_name.upper()}__"
    nested = sorted(k for k in environ if k.upper().startswith(prefix))
    return nested[0] if nested else names[0]


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class LoadedSettings:
    """Settings plus where each top-level value came from."""

    settings: Settings
    config_path: Path | None
    origins: dict[str, str]


def load_settings(
    *,
    config: str | os.PathLike[str] | None = None,
    flags: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> LoadedSettings:
    """Build the effective settings from the four layers; bad values are a `ConfigError`.

    Secrets found in any layer are registered with the redactor before anything can log.
    """
    env = dict(os.environ if environ is None else environ)
    register_environment_secrets(env)
    path = find_config_file(config, env)
    file_layer = read_config_file(path) if path else {}
    env_layer = _env_layer(env)
    flag_layer = {k: v for k, v in (flags or {}).items() if v is not None}

    origins: dict[str, str] = {}
    for layer_name, layer in (("file", file_layer), ("env", env_layer), ("flag", flag_layer)):
        for key, value in layer.items():
            origins[key] = layer_name
            if isinstance(value, dict) and key in Settings.model_fields and _is_section(key):
                for sub in value:
                    origins[f"{key}.{sub}"] = layer_name

    merged = _merge(_merge(file_layer, env_layer), flag_layer)
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_one_line_validation(exc, origins, path, env)) from None

    for name in SECRET_FIELDS:
        secret = getattr(settings, name)
        if secret is not None:
            register_secret(secret.get_secret_value())
    urls = [settings.coinbase_url, settings.coingecko_url, settings.aws_endpoint_url, *settings.daily_urls.values()]
    for url in [*settings.notify_urls, *urls]:
        for part in url_secrets(url or ""):
            register_secret(part)
    if settings.profile not in PROFILES:  # pragma: no cover - Literal already enforces it
        raise ConfigError(f"unknown profile {settings.profile!r}", hint=f"use one of: {', '.join(PROFILES)}")
    return LoadedSettings(settings, path, origins)


def _one_line_validation(exc: ValidationError, origins: dict[str, str], path: Path | None, env: dict[str, str]) -> str:
    err = exc.errors()[0]
    parts = [str(p) for p in err.get("loc", ())]
    loc = ".".join(parts) or "settings"
    top = parts[0] if parts else ""
    nested = len(parts) > 1 and top in Settings.model_fields and _is_section(top)
    origin = origins.get(".".join(parts[:2]) if nested else top, origins.get(top, "default"))
    env_name = f"RC_{top.upper()}__{parts[1].upper()}" if nested else _env_origin(top, env)
    where = {"file": f" in {path}", "env": f" from ${env_name}", "flag": " from the command line"}.get(origin, "")
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        return f"unknown setting {loc!r}{where} (see `console config show` for the known ones)"
    if top == "profile":
        return f"unknown profile{where}: use one of {', '.join(PROFILES)}"
    return f"bad setting {loc}{where}: {msg}"


def describe_settings(loaded: LoadedSettings, environ: dict[str, str] | None = None) -> list[SettingValue]:
    """Every effective setting, flattened (``watchdog.interval_s``), secrets masked, with its source."""
    env = dict(os.environ if environ is None else environ)
    rows: list[SettingValue] = []
    data = loaded.settings.model_dump()
    for name, value in data.items():
        origin = loaded.origins.get(name, "default")
        source = {
            "file": f"file {loaded.config_path}",
            "env": f"env {_env_origin(name, env)}",
            "flag": "flag",
        }.get(origin, "default")
        if isinstance(value, dict) and name in Settings.model_fields and _is_section(name):
            for sub, subvalue in value.items():
                key = f"{name}.{sub}"
                sub_source = {
                    "file": f"file {loaded.config_path}",
                    "env": f"env RC_{name.upper()}__{sub.upper()}",
                    "flag": "flag",
                }.get(loaded.origins.get(key, "default"), "default")
                rows.append(SettingValue(key, _show(subvalue), sub_source))
            continue
        shown = MASK if name in SECRET_FIELDS and value is not None else _show(value)
        rows.append(SettingValue(name, shown, source))
    return rows


def _is_section(name: str) -> bool:
    annotation = Settings.model_fields[name].annotation
    return isinstance(annotation, type) and issubclass(annotation, Section)


def _show(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, SecretStr):
        return MASK
    return mask_urls(str(value))
