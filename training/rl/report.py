"""The experiment's report: ``results/<experiment>/report.html`` with PNG figures.

`write_report` re-runs the saved agent greedily over the test part of its data file
(`training.rl.judge`), so every figure is out of sample and after costs, and draws:

- ``equity.png``: the agent's equity against buy and hold, flat and the last-move rule;
- ``drawdown.png``: the agent's drawdown from its running peak;
- ``actions.png``: the position it held over time (short / flat / long);
- ``training.png``: the reward of each training episode.

The page puts the verdict first (passed or not, each rule's line), then the table of
figures for the agent and each baseline, then the figures. Nothing in it is fetched from
anywhere: the PNGs sit beside the HTML.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from training.atomic import atomic_path

FIGURES = ("equity.png", "drawdown.png", "actions.png", "training.png")
TABLE = ("total_return", "sharpe", "max_drawdown", "turnover", "hit_rate", "trades")


def write_report(
    out_dir: Path,
    *,
    experiment: str,
    evaluation: Mapping[str, Any],
    verdict_lines: Sequence[str],
    passed: bool,
    curves: Mapping[str, Any],
    training_log: Sequence[Mapping[str, float]],
) -> Path:
    """Write the PNGs and ``report.html`` into ``out_dir``; returns the HTML's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x = np.asarray(curves["timestamps"])
    equity = {k: np.asarray(v) for k, v in curves["equity"].items()}

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        with atomic_path(out_dir / name) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    for name, series in equity.items():
        ax.plot(x, series, label="agent" if name == "model" else name.replace("_", " "), lw=2 if name == "model" else 1)
    ax.set_title("Equity on the test part, after costs (start = 1)")
    ax.legend()
    save(fig, "equity.png")

    model = equity["model"]
    drawdown = 1.0 - model / np.maximum.accumulate(model)
    fig, ax = plt.subplots(figsize=(9, 2.8))
    ax.fill_between(x, -drawdown, 0, color="tab:red", alpha=0.5)
    ax.set_title("Agent drawdown from its running peak")
    save(fig, "drawdown.png")

    fig, ax = plt.subplots(figsize=(9, 2.4))
    ax.step(x, np.asarray(curves["positions"]), where="post", lw=0.8)
    ax.set_yticks([-1, 0, 1], ["short", "flat", "long"])
    ax.set_title("Position held over time")
    save(fig, "actions.png")

    fig, ax = plt.subplots(figsize=(9, 2.8))
    rewards = [float(r.get("reward", 0.0)) for r in training_log]
    ax.plot(range(1, len(rewards) + 1), rewards, marker="o", ms=3)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("episode")
    ax.set_title("Training reward per episode (log return after costs)")
    save(fig, "training.png")

    page = _page(experiment, evaluation, verdict_lines, passed)
    with atomic_path(out_dir / "report.html") as tmp:
        tmp.write_text(page)
    with atomic_path(out_dir / "evaluation.json") as tmp:
        tmp.write_text(json.dumps(evaluation, indent=2, sort_keys=True, default=str))
    return out_dir / "report.html"


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "-"
    v = float(value)
    if key in ("total_return", "max_drawdown", "hit_rate"):
        return f"{v * 100:+.2f}%" if key == "total_return" else f"{v * 100:.1f}%"
    if key == "trades":
        return f"{v:.0f}"
    return f"{v:.3f}"


def _page(experiment: str, evaluation: Mapping[str, Any], lines: Sequence[str], passed: bool) -> str:
    part = evaluation.get("part") or {}
    rows = [("agent", evaluation.get("metrics") or {})] + [
        (name.replace("_", " "), figs) for name, figs in (evaluation.get("baselines") or {}).items()
    ]
    head = "".join(f"<th>{k.replace('_', ' ')}</th>" for k in TABLE)
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{_fmt(k, figs.get(k))}</td>" for k in TABLE) + "</tr>"
        for name, figs in rows
    )
    verdict = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    badge = "passed: may become champion" if passed else "FAILED: not champion, cannot go live"
    figures = "".join(f'<p><img src="{name}" alt="{name}" style="max-width:100%"></p>' for name in FIGURES)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(experiment)}: deep-Q agent report</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}
.pass{{color:#060}}.fail{{color:#a00}}</style></head><body>
<h1>{html.escape(experiment)}: {html.escape(str(evaluation.get("unit", "")))}</h1>
<p>Judged out of sample on the {html.escape(str(part.get("name", "test")))} part ({part.get("samples", 0)} decisions,
{html.escape(str(part.get("first")))} to {html.escape(str(part.get("last")))}), after costs, each decision filled at
the next bar's open.</p>
<h2 class="{"pass" if passed else "fail"}">Verdict: {badge}</h2><ul>{verdict}</ul>
<h2>Figures against the baselines</h2><table><tr><th></th>{head}</tr>{body}</table>
{figures}
</body></html>
"""
