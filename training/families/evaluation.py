"""What a family's `evaluate` returns and how the gate judges it: records and rules.

An `Evaluation` is one model judged on one out-of-sample part (`JudgedPart`: which
samples, from when to when), with its own metrics, each baseline's metrics on the same
samples, a paired `Comparison` per (baseline, metric) with a one-sided p-value, and, for
families that trade, the after-cost result of the rule a bot would follow (`AfterCost`)
with its block-bootstrap interval.

A `GateRule` turns an evaluation into a `RuleOutcome`: the figure, the threshold, the
p-value or interval, and pass or fail. `judge` applies a family's rules and returns a
`Verdict`; every line it prints names the figure and what it was held to. The stock
rules below are what every family combines (a family may add its own):

- `MinSamples`: enough judged samples for the figures to mean anything;
- `MetricAbove`: a metric above a floor (e.g. macro-F1 > 0.2);
- `BeatsBaseline`: the model's metric beats a baseline's on the same samples *and* the
  paired test says so at ``alpha`` (a point comparison alone is never enough);
- `SignificantlyAbove`: a metric above a floor with its own p-value at ``alpha``
  (discrimination: AUC above 0.5; the hit rate of the rule that trades above 50%);
- `EarnsAfterCosts`: at least ``min_trades`` trades, a positive net result, and the
  interval's lower end above zero at ``alpha`` (zero trades never pass).

Records are frozen and round-trip through JSON (`to_dict` / `from_dict`), so the
training host writes them into ``metrics.json`` and the console reads them back.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

DEFAULT_ALPHA = 0.05


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class JudgedPart:
    """Which samples an evaluation judged: a named part and its time span (ISO 8601, UTC)."""

    name: str
    """``test`` (decides promotion), ``holdout`` (decides the gate), ``forward`` (bars after training)."""
    samples: int
    first: str | None = None
    last: str | None = None


@dataclass(frozen=True)
class Comparison:
    """The model against one baseline on the same samples, for one metric (higher is better)."""

    baseline: str
    metric: str
    model: float
    baseline_value: float
    p_value: float
    """One-sided: the chance of a difference this large if the model were no better."""
    test: str
    """How ``p_value`` was computed (``mcnemar``, ``block sign-flip``, ``block bootstrap``...)."""
    interval: tuple[float, float] | None = None
    """Interval of the difference (model minus baseline), when the test gives one."""

    @property
    def difference(self) -> float:
        return self.model - self.baseline_value


@dataclass(frozen=True)
class AfterCost:
    """A trading rule's result on the judged part, after fees, spread and slippage."""

    net_return: float
    trades: int
    gross_return: float
    costs_paid: float
    interval: tuple[float, float]
    """Block-bootstrap interval of ``net_return``."""
    p_value: float
    """One-sided: the chance of a net result this good if the rule earned nothing."""
    figures: Mapping[str, float] = field(default_factory=dict)
    """Anything else worth showing: sharpe, max_drawdown, turnover, hit_rate, ..."""


@dataclass(frozen=True)
class Evaluation:
    """One model judged out of sample against its baselines."""

    family: str
    unit: str
    """The symbol, or the model's name for families that train one model (``regime``)."""
    part: JudgedPart
    metrics: Mapping[str, float]
    baselines: Mapping[str, Mapping[str, float]]
    comparisons: tuple[Comparison, ...] = ()
    after_cost: AfterCost | None = None
    baseline_after_cost: Mapping[str, AfterCost] = field(default_factory=dict)

    def comparison(self, baseline: str, metric: str) -> Comparison | None:
        for c in self.comparisons:
            if c.baseline == baseline and c.metric == metric:
                return c
        return None

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON: non-finite numbers become None."""
        return _finite(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Evaluation":
        def after(raw: Mapping[str, Any] | None) -> AfterCost | None:
            if not raw:
                return None
            lo, hi = raw.get("interval") or (None, None)
            return AfterCost(
                net_return=_num(raw.get("net_return")) or 0.0,
                trades=int(raw.get("trades") or 0),
                gross_return=_num(raw.get("gross_return")) or 0.0,
                costs_paid=_num(raw.get("costs_paid")) or 0.0,
                interval=(_nan(lo), _nan(hi)),
                p_value=_num(raw.get("p_value")) or 1.0,
                figures={k: _nan(v) for k, v in dict(raw.get("figures") or {}).items()},
            )

        comparisons = tuple(
            Comparison(
                baseline=str(c["baseline"]),
                metric=str(c["metric"]),
                model=_nan(c.get("model")),
                baseline_value=_nan(c.get("baseline_value")),
                p_value=_num(c.get("p_value")) or 1.0,
                test=str(c.get("test", "")),
                interval=_pair(c.get("interval")),
            )
            for c in data.get("comparisons") or ()
        )
        part = dict(data.get("part") or {})
        return cls(
            family=str(data["family"]),
            unit=str(data["unit"]),
            part=JudgedPart(
                str(part.get("name", "test")), int(part.get("samples") or 0), part.get("first"), part.get("last")
            ),
            metrics={k: _nan(v) for k, v in dict(data.get("metrics") or {}).items()},
            baselines={
                b: {k: _nan(v) for k, v in dict(m).items()} for b, m in dict(data.get("baselines") or {}).items()
            },
            comparisons=comparisons,
            after_cost=after(data.get("after_cost")),
            baseline_after_cost={
                b: a for b, raw in dict(data.get("baseline_after_cost") or {}).items() if (a := after(raw)) is not None
            },
        )


@dataclass(frozen=True)
class RuleOutcome:
    """One rule's verdict with the figure it was judged on."""

    rule: str
    passed: bool
    figure: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    interval: tuple[float, float] | None = None
    detail: str = ""

    def line(self) -> str:
        """One line for the operator: what was measured, against what, and the verdict."""
        parts = [self.rule]
        if self.figure is not None:
            parts.append(f"{self.figure:.4g}" + (f" vs {self.threshold:.4g}" if self.threshold is not None else ""))
        if self.p_value is not None:
            parts.append(f"p={self.p_value:.3g}")
        if self.interval is not None:
            parts.append(f"interval [{self.interval[0]:+.4g}, {self.interval[1]:+.4g}]")
        if self.detail:
            parts.append(self.detail)
        return ": ".join([parts[0], ", ".join(parts[1:])]) + (" - pass" if self.passed else " - FAIL")


@runtime_checkable
class GateRule(Protocol):
    """A check of an evaluation; families list theirs in `ModelFamily.rules`."""

    def check(self, evaluation: Evaluation) -> RuleOutcome: ...


@dataclass(frozen=True)
class Verdict:
    """Every rule's outcome; passed only when all passed."""

    outcomes: tuple[RuleOutcome, ...]

    @property
    def passed(self) -> bool:
        return bool(self.outcomes) and all(o.passed for o in self.outcomes)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Lines of the rules that failed (empty when the verdict is a pass)."""
        if not self.outcomes:
            return ("no rule judged this model",)
        return tuple(o.line() for o in self.outcomes if not o.passed)

    def lines(self) -> tuple[str, ...]:
        return tuple(o.line() for o in self.outcomes)


def judge(evaluation: Evaluation, rules: Sequence[GateRule]) -> Verdict:
    """Apply ``rules`` in order; a verdict with no rules never passes."""
    return Verdict(tuple(rule.check(evaluation) for rule in rules))


# --- stock rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MinSamples:
    minimum: int
    why: str = ""
    """Said beside a shortfall: why the family needs this many, and what to do."""

    def check(self, evaluation: Evaluation) -> RuleOutcome:
        n = evaluation.part.samples
        enough = n >= self.minimum
        return RuleOutcome(
            f"judged samples ({evaluation.part.name})",
            enough,
            float(n),
            float(self.minimum),
            detail="" if enough else self.why,
        )


@dataclass(frozen=True)
class MetricAbove:
    metric: str
    floor: float

    def check(self, evaluation: Evaluation) -> RuleOutcome:
        value = _num(evaluation.metrics.get(self.metric))
        return RuleOutcome(f"{self.metric} above floor", value is not None and value > self.floor, value, self.floor)


@dataclass(frozen=True)
class BeatsBaseline:
    baseline: str
    metric: str
    alpha: float = DEFAULT_ALPHA

    def check(self, evaluation: Evaluation) -> RuleOutcome:
        c = evaluation.comparison(self.baseline, self.metric)
        name = f"beats {self.baseline.replace('_', ' ')} on {self.metric}"
        if c is None:
            return RuleOutcome(name, False, detail="not compared")
        ok = c.model > c.baseline_value and c.p_value <= self.alpha
        return RuleOutcome(
            name, ok, c.model, c.baseline_value, c.p_value, c.interval, detail=f"{c.test}, alpha {self.alpha:g}"
        )


@dataclass(frozen=True)
class EarnsAfterCosts:
    min_trades: int = 30
    alpha: float = DEFAULT_ALPHA

    def check(self, evaluation: Evaluation) -> RuleOutcome:
        a = evaluation.after_cost
        name = "earns after costs"
        if a is None:
            return RuleOutcome(name, False, detail="no after-cost result")
        if a.trades < self.min_trades:
            return RuleOutcome(
                name,
                False,
                float(a.trades),
                float(self.min_trades),
                detail=f"only {a.trades} trades (need {self.min_trades})",
            )
        ok = a.net_return > 0 and a.p_value <= self.alpha and a.interval[0] > 0
        return RuleOutcome(
            name, ok, a.net_return, 0.0, a.p_value, a.interval, detail=f"{a.trades} trades, alpha {self.alpha:g}"
        )


@dataclass(frozen=True)
class SignificantlyAbove:
    """A metric above ``floor`` *and* its one-sided p-value (``p_metric``) at most ``alpha``."""

    metric: str
    floor: float
    p_metric: str
    alpha: float = DEFAULT_ALPHA
    name: str = ""

    def check(self, evaluation: Evaluation) -> RuleOutcome:
        value = _num(evaluation.metrics.get(self.metric))
        p = _num(evaluation.metrics.get(self.p_metric))
        p = 1.0 if p is None else p
        ok = value is not None and value > self.floor and p <= self.alpha
        return RuleOutcome(self.name or f"{self.metric} above {self.floor:g}", ok, value, self.floor, p,
                           detail=f"alpha {self.alpha:g}")  # fmt: skip


def _pair(raw: Any) -> tuple[float, float] | None:
    """An interval read back from JSON (None when it had none)."""
    if not raw:
        return None
    low, high = raw
    return (_nan(low), _nan(high))


def _nan(value: Any) -> float:
    v = _num(value)
    return float("nan") if v is None else v


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
