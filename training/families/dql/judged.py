"""A saved agent judged again on a data file's test part: what `console dql evaluate` and
the report use (judging is not training: it runs anywhere, the model only acts greedily).

The data file must carry the features the agent was trained on (same names, same hash);
its saved scaler is used, so the agent sees the numbers it learnt on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.dataset import Scaler
from training.errors import FeatureHashMismatch
from training.families.artifacts import load_json
from training.families.evaluation import Evaluation, Verdict, judge
from training.metrics import TradingCosts


@dataclass(frozen=True)
class JudgedAgent:
    evaluation: Evaluation
    verdict: Verdict
    curves: dict[str, Any]
    training_log: list[dict[str, float]]

    def write_report(self, out_dir: Path, experiment: str) -> Path:
        """The experiment's report page (`training.rl.report.write_report`) in ``out_dir``; its path."""
        from training.rl.report import write_report

        return write_report(
            out_dir,
            experiment=experiment,
            evaluation=self.evaluation.to_dict(),
            verdict_lines=self.verdict.lines(),
            passed=self.verdict.passed,
            curves=self.curves,
            training_log=self.training_log,
        )


def judge_saved(folder: Path, data_file: Path) -> JudgedAgent:
    from training.families.dql import DqlFamily
    from training.rl.env import side_cost
    from training.rl.judge import evaluate_positions, greedy_positions
    from training.rl.market import load_market

    family = DqlFamily()
    folder = Path(folder)
    agent = family.load(folder)
    features = load_json(folder / "features.json")
    params = agent.config["params"]
    market = load_market(
        Path(data_file),
        window=int(params["env"]["window"]),
        longest_feature_window=int(params["env"]["longest_feature_window"]),
        scaler=Scaler.from_dict(features["scaler"]),
    )
    if market.feature_hash != features["feature_hash"] or list(market.feature_names) != features["feature_names"]:
        raise FeatureHashMismatch(
            f"{data_file} holds other features than the agent in {folder} was trained on; rebuild features"
        )
    costs = TradingCosts(**agent.config["costs"])
    positions = greedy_positions(market, "test", agent.act, {"positions": agent.positions, "costs": costs})
    evaluation, curves = evaluate_positions(market.symbol, market, "test", positions, side_cost(costs))
    verdict = judge(evaluation, family.rules(params))
    log = load_json(folder / "training_log.json")
    return JudgedAgent(evaluation, verdict, curves, list(log or []))
