"""The run report: one self-contained HTML page per run, its figures embedded, PNG copies beside it.

`write_report` reads the state store only (nothing is fetched or recomputed) and shows:

- the run: checklist, profile, status, when, and each step with its state, time and result;
- cost and savings: each instance's ledger line (`console.cost.ledger`) and the total;
- per-symbol training curves: training and validation loss per epoch (training events);
- the out-of-sample figures against the baselines: the train step's test table and the
  dry run's judged bars (accuracy of the model and of each baseline on the same bars);
- the after-cost equity of the traded rule against the baselines' rules (the dry run's
  ``equity`` curves, on bars promotion never saw);
- the gate verdict with every reason, and each evidence rule with its figure, threshold
  and p-value or interval (`training.evidence.EvidenceRules.judge`).

Figures are drawn with matplotlib's Agg backend (no display), written as PNG files next
to the page (``<page stem>-<figure>.png``) and embedded in it as data URIs, so the page
alone is the whole report (it can be mailed or archived) and the PNGs can be reused.
"""

from __future__ import annotations

import base64
import html
import io
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from console.cost import ledger
from console.state import StateStore
from console.state.records import EventRecord, StepRecord

TRAINING_KINDS = ("train.progress", "train.epoch")


@dataclass
class Figure:
    name: str
    title: str
    png: bytes


@dataclass
class _Page:
    parts: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.parts.append(text)


def default_path(state_dir: Path, run_id: str) -> Path:
    """Where `console report RUN` writes without ``--out``: the run's own directory."""
    return Path(state_dir).expanduser() / "runs" / run_id / "report.html"


def write_report(store: StateStore, run_id: str, out: Path, *, gate_rules: Any = None) -> Path:
    """Write the report of ``run_id`` to ``out`` (and its PNGs beside it); returns ``out``.

    ``gate_rules`` (a `training.evidence.EvidenceRules`) lists every evidence rule per
    symbol; without it only the gate's own reasons are shown.
    """
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(run_id)
    steps = store.steps(run_id)
    events = store.events(run_id)
    page = _Page()
    page.add(f"<h1>Run {_e(run_id)}</h1>")
    page.add(
        f"<p class='meta'>checklist <b>{_e(run.checklist)}</b> · profile <b>{_e(run.profile)}</b> · "
        f"status <b class='{_e(run.status)}'>{_e(run.status)}</b> · created {_when(run.created_at)} · "
        f"report written {_when(time.time())}</p>"
    )
    dryrun = next((s for s in steps if s.step == "dryrun" or s.name == "dryrun"), None)
    _verdict(page, dryrun, gate_rules)
    _steps(page, steps)
    _cost(page, store, run_id)
    _training(page, events, steps)
    _out_of_sample(page, dryrun)
    _equity(page, dryrun)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for figure in page.figures:
        out.with_name(f"{out.stem}-{figure.name}.png").write_bytes(figure.png)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(_document(run_id, "\n".join(page.parts)))
    tmp.replace(out)
    return out


# -- sections ---------------------------------------------------------------------------------


def _verdict(page: _Page, dryrun: StepRecord | None, rules: Any) -> None:
    page.add("<h2>Gate verdict</h2>")
    if dryrun is None:
        page.add("<p>This checklist has no dry run: no gate verdict.</p>")
        return
    reasons = list(dryrun.details.get("gate") or []) if isinstance(dryrun.details, dict) else []
    if dryrun.state == "succeeded":
        page.add(f"<p class='verdict pass'>PASSED — {_e(dryrun.summary)}</p>")
    elif dryrun.state in ("pending", "running"):
        page.add(f"<p class='verdict'>not judged yet (the dry run is {_e(dryrun.state)})</p>")
    else:
        page.add(f"<p class='verdict fail'>FAILED — {_e(dryrun.summary)}</p>")
    if reasons:
        page.add("<ul class='reasons'>" + "".join(f"<li>{_e(r)}</li>" for r in reasons) + "</ul>")
    for result in _dryrun_results(dryrun):
        evidence = (result.get("figures") or {}).get("evidence")
        if rules is None or not isinstance(evidence, dict):
            continue
        rows = "".join(
            f"<tr><td class='{'pass' if ok else 'fail'}'>{'✓' if ok else '✗'}</td><td>{_e(line)}</td></tr>"
            for ok, line in rules.judge(evidence)
        )
        page.add(f"<h3>{_e(result.get('symbol'))}: every rule</h3><table class='rules'>{rows}</table>")


def _steps(page: _Page, steps: Sequence[StepRecord]) -> None:
    page.add("<h2>Steps</h2>")
    total = sum((s.elapsed or 0.0) for s in steps if s.finished_at)
    rows = "".join(
        f"<tr><td>{s.idx + 1}</td><td>{_e(s.name)}</td><td class='{_e(s.state)}'>{_e(s.state)}</td>"
        f"<td class='num'>{_secs(s.elapsed if s.finished_at else None)}</td><td>{_e(s.summary or s.plan)}</td></tr>"
        for s in steps
    )
    page.add(
        "<table><tr><th>#</th><th>step</th><th>state</th><th>took</th><th>result</th></tr>"
        f"{rows}</table><p class='meta'>steps took {_secs(total)} in all</p>"
    )
    timed = [s for s in steps if s.finished_at and s.elapsed]
    if timed:
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(timed) + 1))
        ax.barh([s.name for s in timed][::-1], [s.elapsed or 0.0 for s in timed][::-1], color="#4c72b0")
        ax.set_xlabel("seconds")
        _figure(page, fig, "steps", "Time per step")


def _cost(page: _Page, store: StateStore, run_id: str) -> None:
    page.add("<h2>Cost and savings</h2>")
    lines = ledger(store, run_id=run_id)
    if not lines:
        page.add("<p>No instance was launched: no cloud cost.</p>")
        return
    rows = "".join(
        f"<tr><td>{_e(c.instance_id)}</td><td>{_e(c.instance_type)}</td><td>{_e(c.zone)}</td>"
        f"<td class='num'>{c.hours * 60:.1f} min</td><td class='num'>${c.cost_usd:.4f}</td>"
        f"<td class='num'>{_usd(c.on_demand_usd)}</td><td class='num'>{_usd(c.savings_usd)}</td><td>{_e(c.source)}</td></tr>"
        for c in lines
    )
    cost = sum(c.cost_usd for c in lines)
    saved = sum(c.savings_usd or 0.0 for c in lines)
    page.add(
        "<table><tr><th>instance</th><th>type</th><th>zone</th><th>billed</th><th>cost</th><th>on demand</th>"
        f"<th>saved</th><th>prices</th></tr>{rows}</table>"
        f"<p class='meta'>total ${cost:.4f}; spot saved ${saved:.4f} against on-demand prices</p>"
    )


def _training(page: _Page, events: Sequence[EventRecord], steps: Sequence[StepRecord]) -> None:
    page.add("<h2>Training</h2>")
    curves: dict[str, dict[int, tuple[float | None, float | None]]] = {}
    for event in events:
        data = event.data
        if event.kind not in TRAINING_KINDS or not data.get("symbol") or data.get("epoch") is None:
            continue
        curves.setdefault(str(data["symbol"]), {})[int(data["epoch"])] = (
            _num(data.get("loss")),
            _num(data.get("val_loss")),
        )
    train = next((s for s in steps if s.name == "train"), None)
    table = train.details.get("table") if train is not None and isinstance(train.details, dict) else None
    if isinstance(table, dict) and table.get("columns"):
        page.add(f"<h3>{_e(table.get('title', 'per-symbol test metrics'))}</h3>" + _table(table))
    if not curves:
        page.add("<p>No training progress was recorded.</p>")
        return
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(max(7, 4 * len(curves)), 3), squeeze=False)
    for ax, (symbol, by_epoch) in zip(axes[0], sorted(curves.items()), strict=True):
        epochs = sorted(by_epoch)
        for i, label in ((0, "training loss"), (1, "validation loss")):
            pts = [(e, by_epoch[e][i]) for e in epochs if by_epoch[e][i] is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax.set_title(symbol)
        ax.set_xticks(epochs)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    _figure(page, fig, "training", "Training and validation loss per epoch")


def _out_of_sample(page: _Page, dryrun: StepRecord | None) -> None:
    results = [r for r in _dryrun_results(dryrun) if isinstance((r.get("figures") or {}).get("evidence"), dict)]
    page.add("<h2>Out of sample, against the baselines</h2>")
    if not results:
        page.add("<p>No dry-run figures (the dry run did not run).</p>")
        return
    rows: list[str] = []
    names: list[str] = []
    model: list[float] = []
    bases: dict[str, list[float]] = {}
    for r in results:
        f = r["figures"]
        e = f["evidence"]
        names.append(str(r.get("symbol")))
        model.append(_num(e.get("accuracy")) or 0.0)
        base_cells = []
        for name, b in sorted((e.get("baselines") or {}).items()):
            bases.setdefault(name, []).append(_num(b.get("accuracy")) or 0.0)
            base_cells.append(f"{name.replace('_', ' ')} {_pct(b.get('accuracy'))} (McNemar p={_p(b.get('p_value'))})")
        judged = f.get("judged_bars") or {}
        rows.append(
            f"<tr><td>{_e(r.get('symbol'))}</td><td class='num'>{e.get('samples')}</td>"
            f"<td>{_e(judged.get('first'))} – {_e(judged.get('last'))}</td>"
            f"<td class='num'>{_pct(e.get('accuracy'))}</td><td>{_e('; '.join(base_cells))}</td>"
            f"<td class='num'>{_num(e.get('auc')) or 0:.3f} (p={_p(e.get('auc_p_value'))})</td>"
            f"<td class='num'>{e.get('trades')}</td><td class='num'>{(_num(e.get('net_return')) or 0):+.4f} "
            f"(p={_p(e.get('net_p_value'))})</td></tr>"
        )
    page.add(
        "<table><tr><th>symbol</th><th>samples</th><th>judged bars</th><th>accuracy</th><th>baselines, same bars</th>"
        f"<th>AUC</th><th>trades</th><th>after costs</th></tr>{''.join(rows)}</table>"
    )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3))
    width = 0.8 / (1 + len(bases))
    xs = range(len(names))
    ax.bar([x - 0.4 + width / 2 for x in xs], model, width, label="model")
    for k, (name, values) in enumerate(sorted(bases.items()), start=1):
        ax.bar([x - 0.4 + width / 2 + k * width for x in xs], values, width, label=name.replace("_", " "))
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(list(xs), names)
    ax.set_ylim(0.3, max([*model, *(v for vs in bases.values() for v in vs), 0.6]) + 0.05)
    ax.set_ylabel("accuracy on judged bars")
    ax.legend(fontsize=7)
    _figure(page, fig, "out-of-sample", "Accuracy out of sample: model and baselines on the same bars")


def _equity(page: _Page, dryrun: StepRecord | None) -> None:
    found = {str(r.get("symbol")): (r.get("figures") or {}).get("equity") for r in _dryrun_results(dryrun)}
    curves: dict[str, dict[str, Any]] = {k: v for k, v in found.items() if isinstance(v, dict) and v.get("model")}
    page.add("<h2>After-cost equity of the traded rule</h2>")
    if not curves:
        page.add("<p>No equity curves (the dry run did not record them).</p>")
        return
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(max(7, 4 * len(curves)), 3), squeeze=False)
    for ax, (symbol, series) in zip(axes[0], sorted(curves.items()), strict=True):
        for name in ("model", "majority", "last_move"):
            values = series.get(name) or []
            if values:
                ax.plot(
                    range(len(values)), values, label=name.replace("_", " "), linewidth=1.6 if name == "model" else 1
                )
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_title(symbol)
        ax.set_xlabel("decisions (thinned)")
        ax.set_ylabel("cumulative return after costs")
        ax.legend(fontsize=7)
    _figure(page, fig, "equity", "After-cost equity on the judged bars: the model's rule and the baselines'")


# -- helpers ----------------------------------------------------------------------------------


def _dryrun_results(dryrun: StepRecord | None) -> list[dict[str, Any]]:
    if dryrun is None or not isinstance(dryrun.details, dict):
        return []
    return [r for r in dryrun.details.get("results") or [] if isinstance(r, dict) and r.get("check") == "dryrun"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(page: _Page, fig: Any, name: str, title: str) -> None:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _pyplot().close(fig)
    png = buf.getvalue()
    page.figures.append(Figure(name, title, png))
    data = base64.b64encode(png).decode()
    page.add(
        f"<figure><img alt='{_e(title)}' src='data:image/png;base64,{data}'><figcaption>{_e(title)}</figcaption></figure>"
    )


def _table(spec: dict[str, Any]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in spec["columns"])
    body = "".join("<tr>" + "".join(f"<td>{_e(_cell(v))}</td>" for v in row) + "</tr>" for row in spec.get("rows", []))
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _num(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _pct(value: Any) -> str:
    v = _num(value)
    return "–" if v is None else f"{v * 100:.1f}%"


def _p(value: Any) -> str:
    v = _num(value)
    return "–" if v is None else f"{v:.3g}"


def _usd(value: float | None) -> str:
    return "–" if value is None else f"${value:.4f}"


def _secs(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}s"


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px;text-align:left}
td.num{text-align:right}.meta{color:#555;font-size:13px}.pass,.succeeded{color:#1a7f37}.fail,.failed{color:#c62828}
.verdict{font-size:20px;font-weight:bold}figure{margin:1em 0}img{max-width:100%}figcaption{font-size:12px;color:#555}
"""


def _document(run_id: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>retrain-console run {_e(run_id)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )
