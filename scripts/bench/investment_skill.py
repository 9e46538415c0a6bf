"""The regime and health models against their baselines, out of sample, over several seeds,
on the made-up daily market with regimes and on its random walk.

    .venv/bin/python scripts/bench/investment_skill.py [--seeds 0,1,2] [--days 2000] [--assets 30]
        [--epochs 60] [--health-epochs 15] [--regime-type gru|transformer] [--health-type autoencoder|vae]
        [--source synthetic|simulator] [--last 2040-12-31] [--families regime,health]

Each line: world, seed, family, the model's figure beside its baseline's, the p-value the
gate used, and the verdict. On the structured market the models should pass; on the random
walk nothing may pass. The market is `training.families.investment.synthetic` (the same
process the conformance test uses), built from closes through the real table builder; or, with
``--source simulator``, the sandbox market simulator's daily process (`remote.sandbox.daily`,
seeded with the seed) fetched over HTTP from its Stooq, FRED and GDELT endpoints and built by the
daily pipeline (`console.daily_data`): the newest ``--days`` trading days up to ``--last`` and the
simulator's 32 assets (``--assets`` is ignored).

The health model's test needs length as well as breadth: its daily correlations are judged in
63-day blocks, so 3,500 days leave about eleven test blocks, and a structured seed whose test
years happen to favour the relative-strength rule can miss p < 0.05 with a real edge (seed 1);
``--days 5000 --last 2040-12-31`` leaves sixteen. ``scripts/bench/health_gate_null.py`` measures
the tests' false-positive rate and power without training anything.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from training.families import get_family
from training.families.base import FitJob
from training.families.evaluation import judge
from training.families.investment.synthetic import write_synthetic_tables

SIMULATOR_LAST = "2040-12-31"
"""The last day the simulator's daily process has (`remote.sandbox.daily.END`)."""


def simulator_tables(
    folder: Path, days: int, *, seed: int, structured: bool, last_day: str = SIMULATOR_LAST
) -> tuple[Path, Path]:
    """The two tables of the simulator's daily market, through HTTP and the daily pipeline."""
    import secrets
    from datetime import date, timedelta

    from console.daily_data import UNIVERSE, build, fetch_inputs, trading_days
    from remote.sandbox.market_server import MarketSimulator
    from training.data.daily_sources import DailySources
    from training.families.investment.data import write_table

    last = date.fromisoformat(last_day)
    mode = "structured" if structured else "random_walk"
    with MarketSimulator(seed=seed, mode=mode, rate_limit_per_s=1000) as sim:
        sim.clock = lambda: 2_300_000_000.0  # 2042: after the last day, so every day has closed
        with DailySources(
            stooq_url=sim.url, fred_url=sim.url, gdelt_url=sim.url, fred_key=secrets.token_hex(16)
        ) as src:
            inputs = fetch_inputs(src, UNIVERSE, last - timedelta(days=days * 7 // 5 + 10), last)
    built = build(inputs, UNIVERSE, trading_days(inputs, last, days))
    return write_table(built.context, folder / "context.parquet"), write_table(
        built.features, folder / "features.parquet"
    )


FIGURES = {"regime": ("persistence", "test_f1_macro"), "health": ("rel_strength_rank", "test_health_correlation")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--days", type=int, default=2000)
    parser.add_argument("--assets", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--health-epochs", type=int, default=15)
    parser.add_argument("--regime-type", default="gru")
    parser.add_argument("--health-type", default="autoencoder")
    parser.add_argument("--source", choices=("synthetic", "simulator"), default="synthetic")
    parser.add_argument("--last", default=SIMULATOR_LAST, help="the simulator's newest day (--source simulator)")
    parser.add_argument("--families", default=",".join(FIGURES), help="which of regime,health to train")
    args = parser.parse_args()
    families = [f for f in FIGURES if f in args.families.split(",")]
    passes = {("structured", f): 0 for f in families} | {("random walk", f): 0 for f in families}
    seeds = [int(s) for s in args.seeds.split(",")]
    types = {"regime": args.regime_type, "health": args.health_type}
    for seed in seeds:
        for world, structured in (("structured", True), ("random walk", False)):
            with tempfile.TemporaryDirectory() as tmp:
                if args.source == "simulator":
                    context, features = simulator_tables(
                        Path(tmp), args.days, seed=seed, structured=structured, last_day=args.last
                    )
                else:
                    context, features = write_synthetic_tables(
                        Path(tmp), args.days, args.assets, seed=seed, structured=structured
                    )
                inputs = {"regime": {"context": context}, "health": {"asset_features": features}}
                for name in families:
                    baseline, metric = FIGURES[name]
                    family = get_family(name)
                    params = {"epochs": args.epochs, "model_type": types[name], "device": "cpu"}
                    if name == "health":
                        params |= {"epochs": args.health_epochs, "batch_size": 512, "patience": 3}
                    job = FitJob(name, name, inputs[name], Path(tmp) / f"work-{name}", params=params, seed=seed)
                    began = time.time()
                    fitted = family.fit(job, lambda p: None)
                    evaluation = family.evaluate(fitted, job)
                    verdict = judge(evaluation, family.rules(family.check_params(params)))
                    c = evaluation.comparison(baseline, metric)
                    assert c is not None
                    passes[(world, name)] += verdict.passed
                    print(
                        f"{world:11s} seed {seed} {name:6s} {metric} {c.model:+.4f} vs {baseline} "
                        f"{c.baseline_value:+.4f}  p={c.p_value:.3g}  "
                        f"{'PASS' if verdict.passed else 'fail'}  ({time.time() - began:.1f} s)",
                        flush=True,
                    )
    print()
    for (world, name), n in passes.items():
        print(f"{world:11s} {name:6s} passed {n} of {len(seeds)} seeds")
    leaked = sum(n for (world, _), n in passes.items() if world == "random walk")
    return 1 if leaked else 0


if __name__ == "__main__":
    sys.exit(main())
