"""The checklist's ``alignment`` and ``dryrun`` steps; the work is `console.checking`'s.

Each records the seconds it spent fetching candles and building features (``fetch_s``,
``features_s``), so the checklist bench can tell them from its own orchestration.
"""

from __future__ import annotations

from console.checking import alignment, dryrun, models_dir, store_results
from console.checklist.step import Step, StepContext, StepResult, register
from console.errors import GateFailed
from console.outputs import AlignmentOutputs, DryrunOutputs
from console.steps.params import AlignmentParams, DryrunParams
from console.stopwatch import Stopwatch


@register
class Alignment(Step):
    name = "alignment"
    Params = AlignmentParams
    Outputs = AlignmentOutputs
    retryable = False

    def plan(self, ctx: StepContext) -> str:
        return (f"compare feature names, order, count and hash for {', '.join(ctx.params.symbols)}: "
                "training file vs runtime builder vs model checkpoint")  # fmt: skip

    def run(self, ctx: StepContext) -> StepResult:
        watch = Stopwatch()
        results = alignment(ctx.resources, ctx.params.symbols, models_dir(ctx.resources), watch)
        store_results(ctx.state, results, ctx.run_id, ctx.step_name)
        for r in results:
            ctx.log.info("%s", r.summary)
        details = {"results": [r.to_dict() for r in results], **watch.outputs()}
        bad = [r for r in results if not r.passed]
        if bad:
            return StepResult.failed("; ".join(r.summary for r in bad), details)
        return StepResult.ok(
            f"{len(results)} symbols aligned",
            details,
            outputs=AlignmentOutputs(aligned=[r.symbol for r in results], **watch.outputs()),
        )


@register
class Dryrun(Step):
    name = "dryrun"
    Params = DryrunParams
    Outputs = DryrunOutputs
    retryable = False

    def plan(self, ctx: StepContext) -> str:
        return (f"dry run {ctx.params.iterations} iterations for {', '.join(ctx.params.symbols)} "
                "(no orders), then record the pre-live gate")  # fmt: skip

    def run(self, ctx: StepContext) -> StepResult:
        watch = Stopwatch()
        outcome = dryrun(ctx.resources, ctx.state, ctx.params.symbols, models_dir(ctx.resources),
                         ctx.params.iterations, on_line=lambda line: ctx.log.info("%s", line), run_id=ctx.run_id,
                         step=ctx.step_name, watch=watch)  # fmt: skip
        details = {
            "results": [r.to_dict() for r in outcome.results],
            "gate": outcome.record["reasons"],
            **watch.outputs(),
        }
        if not outcome.passed:
            reasons = outcome.record["reasons"]
            failed = GateFailed(
                f"gate failed: {reasons[0]}", hint=f"{len(reasons)} reason(s); see `console gate status`"
            )
            ctx.log.error("%s", failed)
            # Not raised: the figures (and the seconds spent fetching) stay with the result.
            return StepResult.failed(str(failed), {**details, "exit_code": failed.exit_code})
        return StepResult.ok(f"gate passed for {', '.join(outcome.record['symbols'])}, expires in "
                             f"{ctx.settings.gate.expiry_hours:g} h", details,
                             outputs=DryrunOutputs(gate_id=outcome.record["id"], **watch.outputs()))  # fmt: skip
