"""`console report [RUN] [--out FILE.html]`: the run's report as one self-contained HTML page.

Without RUN, the newest run; without ``--out``, ``<state>/runs/RUN/report.html``. The
figures are embedded in the page and also written beside it as PNG files
(``<page stem>-<figure>.png``). Exit codes: 0 written, 2 bad input (no such run, an
``--out`` that is not an .html file).
"""

from __future__ import annotations

from pathlib import Path

import click

from console.app import App, common_options, pass_app
from console.errors import StateError, UsageError


def report_for(app: App, run_id: str, out: Path | None = None) -> Path:
    """Write the report of ``run_id`` (every gate rule listed, from the settings' criteria)."""
    from console.report import default_path, write_report
    from runtime_checks.gate import GateCriteria

    rules = GateCriteria.from_settings(app.settings.gate).evidence_rules()
    target = out if out is not None else default_path(app.settings.state_dir, run_id)
    return write_report(app.store, run_id, target, gate_rules=rules)


@click.command("report")
@click.argument("run_id", required=False, metavar="[RUN]")
@click.option("--out", "out", metavar="FILE.html", type=click.Path(dir_okay=False), help="Where to write the page.")
@common_options
@pass_app
def report_cmd(app: App, run_id: str | None, out: str | None) -> None:
    """Write a run's report: steps, cost, training curves, out-of-sample figures, equity, gate verdict."""
    if out is not None and not out.lower().endswith((".html", ".htm")):
        raise UsageError(f"--out {out!r} is not an .html file", hint="for example --out report.html")
    if run_id is None:
        newest = app.store.list_runs(1)
        if not newest:
            raise StateError("no runs yet", hint="start one with `console run --checklist retrain`")
        run_id = newest[0].id
    elif app.store.get_run(run_id) is None:
        raise StateError(f"no run {run_id!r}", hint="see `console runs`")
    path = report_for(app, run_id, Path(out) if out else None)
    click.echo(f"report: {path}")


def register(cli: click.Group) -> None:
    cli.add_command(report_cmd)
