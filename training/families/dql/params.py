"""The ``dql`` family's parameters, from a job's ``params`` mapping, checked once.

``FitJob.params`` for this family::

    {"agent_type": "custom",            # or "dqn" (stable-baselines3)
     "episodes": 30, "episode_length": 256,
     "env": {"window": 16, "positions": [-1, 0, 1], "longest_feature_window": 0},
     "agent": {"hidden": [64, 64], "learning_rate": 0.001, "gamma": 0.9, "n_step": 3, ...},
     "gates": {"min_trades": 30, "alpha": 0.05, "min_decisions": 100},
     "expected_feature_hash": "sha256:...",
     "fresh": false}

Trading costs come from ``FitJob.costs``, the same section every family reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from training.errors import BadTrainingConfig
from training.families.evaluation import DEFAULT_ALPHA
from training.rl.ddqn import DdqnConfig
from training.rl.env import DEFAULT_POSITIONS
from training.rl.judge import MIN_DECISIONS

AGENT_TYPES = ("custom", "dqn")
SECTIONS = ("agent_type", "episodes", "episode_length", "env", "agent", "gates", "expected_feature_hash", "fresh")
TRAINER_SECTIONS = ("train", "features")
"""The trainer's config-file layout (`training.train --family dql --config F`): ``train`` holds
the settings above flat (``window`` and ``positions`` for ``env``, the rest of the agent's for
``agent``); ``features`` (the lstm's multi-timeframe symbols) means nothing to an agent."""


@dataclass(frozen=True)
class DqlParams:
    agent_type: str = "custom"
    episodes: int = 30
    episode_length: int = 256
    window: int = 16
    positions: tuple[float, ...] = DEFAULT_POSITIONS
    longest_feature_window: int = 200
    """Sets the purge gap between parts, as for the direction models (their default)."""
    agent: DdqnConfig = DdqnConfig()
    min_trades: int = 30
    alpha: float = DEFAULT_ALPHA
    min_decisions: int = MIN_DECISIONS
    expected_hash: str | None = None
    fresh: bool = False

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any] | None) -> "DqlParams":
        """Validated parameters; unknown sections or settings and out-of-range values are bad input."""
        raw = _from_trainer_layout(dict(params or {}))
        unknown = sorted(set(raw) - set(SECTIONS))
        if unknown:
            raise BadTrainingConfig(f"unknown dql parameter(s): {', '.join(unknown)} (known: {', '.join(SECTIONS)})")
        agent_type = str(raw.get("agent_type", "custom"))
        if agent_type not in AGENT_TYPES:
            raise BadTrainingConfig(f"unknown agent type {agent_type!r} (known: {', '.join(AGENT_TYPES)})")
        episodes = _int(raw.get("episodes", 30), "episodes")
        length = _int(raw.get("episode_length", 256), "episode_length")
        if episodes <= 0 or length <= 0:
            raise BadTrainingConfig(f"episodes ({episodes}) and episode_length ({length}) must be at least 1")
        env = dict(raw.get("env") or {})
        _known(env, ("window", "positions", "longest_feature_window"), "env")
        window = _int(env.get("window", 16), "env.window")
        if window < 1:
            raise BadTrainingConfig(f"env.window must be at least 1, got {window}")
        positions = tuple(float(p) for p in env.get("positions", DEFAULT_POSITIONS))
        if len(positions) < 2 or len(set(positions)) != len(positions) or any(abs(p) > 1 for p in positions):
            raise BadTrainingConfig(f"env.positions must be two or more distinct sizes in [-1, 1], got {positions}")
        agent_raw = dict(raw.get("agent") or {})
        names = {f.name for f in fields(DdqnConfig)} - {"episodes"}
        _known(agent_raw, tuple(sorted(names)), "agent")
        try:
            settings: dict[str, Any] = {
                k: (tuple(int(h) for h in v) if k == "hidden" else type(getattr(DdqnConfig(), k))(v))
                for k, v in agent_raw.items()
            }
            agent = replace(DdqnConfig(), episodes=episodes, **settings)
        except (TypeError, ValueError) as exc:
            raise BadTrainingConfig(f"bad agent setting ({exc})") from None
        if agent.n_step < 1 or agent.batch_size < 1 or not 0 < agent.gamma <= 1:
            raise BadTrainingConfig("agent.n_step and agent.batch_size must be at least 1 and gamma in (0, 1]")
        gates = dict(raw.get("gates") or {})
        _known(gates, ("min_trades", "alpha", "min_decisions"), "gates")
        alpha = float(gates.get("alpha", DEFAULT_ALPHA))
        if not 0.0 < alpha < 0.5:
            raise BadTrainingConfig(f"gate alpha {alpha} must be between 0 and 0.5")
        return cls(
            agent_type=agent_type,
            episodes=episodes,
            episode_length=length,
            window=window,
            positions=positions,
            longest_feature_window=_int(env.get("longest_feature_window", 200), "env.longest_feature_window"),
            agent=agent,
            min_trades=_int(gates.get("min_trades", 30), "gates.min_trades"),
            alpha=alpha,
            min_decisions=_int(gates.get("min_decisions", MIN_DECISIONS), "gates.min_decisions"),
            expected_hash=raw.get("expected_feature_hash"),
            fresh=bool(raw.get("fresh", False)),
        )

    def to_dict(self) -> dict[str, Any]:
        agent = {k: v for k, v in asdict(self.agent).items() if k != "episodes"}
        agent["hidden"] = list(self.agent.hidden)
        return {
            "agent_type": self.agent_type,
            "episodes": self.episodes,
            "episode_length": self.episode_length,
            "env": {
                "window": self.window,
                "positions": list(self.positions),
                "longest_feature_window": self.longest_feature_window,
            },
            "agent": agent,
            "gates": {"min_trades": self.min_trades, "alpha": self.alpha, "min_decisions": self.min_decisions},
            "expected_feature_hash": self.expected_hash,
            "fresh": self.fresh,
        }


def _from_trainer_layout(raw: dict[str, Any]) -> dict[str, Any]:
    """``{"train": {...flat...}, "features": ...}`` as this family's sections (other keys kept)."""
    if not any(k in raw for k in TRAINER_SECTIONS):
        return raw
    train = dict(raw.pop("train", None) or {})
    raw.pop("features", None)
    env = dict(raw.get("env") or {})
    agent = dict(raw.get("agent") or {})
    for key, value in train.items():
        if key in ("agent_type", "episodes", "episode_length"):
            raw[key] = value
        elif key in ("window", "positions", "longest_feature_window"):
            env[key] = value
        elif key != "device":  # the job's device decides (FitJob.device)
            agent[key] = value
    if env:
        raw["env"] = env
    if agent:
        raw["agent"] = agent
    return raw


def _int(value: Any, name: str) -> int:
    try:
        if isinstance(value, bool) or float(value) != int(float(value)):
            raise ValueError
        return int(float(value))
    except (TypeError, ValueError):
        raise BadTrainingConfig(f"{name} must be a whole number, got {value!r}") from None


def _known(section: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise BadTrainingConfig(f"unknown {where} setting(s): {', '.join(unknown)} (known: {', '.join(known)})")
