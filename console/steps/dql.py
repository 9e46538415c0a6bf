"""The ``dql-report`` step: the deep-Q agents a run brought home, judged again and reported.

After ``download``, each symbol's newest agent in the models directory is judged greedily on
the test part of its feature file, after costs, against the baselines (judging is not
training: it runs here), and ``results/<experiment>/report.html`` is written with its PNG
figures (`training.rl.report`). ``experiment`` defaults to the run id (``-<SYMBOL>`` is
appended when the run trained several symbols). Each page is announced as a
``train.report`` event (symbol, path, passed), which the TUI's training pane shows.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from console.checklist.step import Step, StepContext, StepResult, register
from console.outputs import StepOutputs
from console.steps.params import SymbolsParams


class DqlReportParams(SymbolsParams):
    experiment: str = Field("", pattern=r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,63})?$")
    """``results/<experiment>/``; the run id when empty."""
    results_dir: str = "results"
    """Where the experiments' folders go (relative to the directory the console runs in)."""


class DqlReportOutputs(StepOutputs):
    reports: dict[str, str] = Field(default_factory=dict)
    """Symbol -> the report's path."""
    passed: dict[str, bool] = Field(default_factory=dict)


@register
class DqlReport(Step):
    name = "dql-report"
    Params = DqlReportParams
    Outputs = DqlReportOutputs

    def plan(self, ctx: StepContext) -> str:
        return f"judge the agents of {', '.join(ctx.params.symbols)} again and write their report pages"

    def run(self, ctx: StepContext) -> StepResult:
        from training.families.dql.judged import judge_saved

        p = ctx.params
        experiment = p.experiment or ctx.run_id
        reports: dict[str, str] = {}
        passed: dict[str, bool] = {}
        for symbol in p.symbols:
            ctx.check_cancelled()
            folder = newest_agent(ctx.resources.paths.models / "models" / symbol)
            if folder is None:
                return StepResult.failed(f"no {symbol} agent in {ctx.resources.paths.models}; run the download step")
            data = ctx.resources.paths.features / f"{symbol}.parquet"
            judged = judge_saved(folder, data)
            name = experiment if len(p.symbols) == 1 else f"{experiment}-{symbol}"
            page = judged.write_report(Path(p.results_dir).resolve() / name, name)
            for line in judged.verdict.lines():
                ctx.log.info("%s: %s", symbol, line)
            reports[symbol], passed[symbol] = str(page), judged.verdict.passed
            ctx.emit("train.report", f"{symbol} report: {page}", symbol=symbol, path=str(page),
                     passed=judged.verdict.passed)  # fmt: skip
        summary = "; ".join(f"{s}: {'passed' if passed[s] else 'did not pass'}, {reports[s]}" for s in p.symbols)
        return StepResult.ok(summary, outputs=DqlReportOutputs(reports=reports, passed=passed))


def newest_agent(base: Path) -> Path | None:
    """The newest dql model folder under ``models/<SYMBOL>/`` (None when there is none)."""
    import json

    for folder in sorted((p for p in base.iterdir() if p.is_dir()), reverse=True) if base.is_dir() else ():
        try:
            if json.loads((folder / "config.json").read_text()).get("format", "").startswith("retrain-console/dql/"):
                return folder
        except (OSError, ValueError):
            continue
    return None
