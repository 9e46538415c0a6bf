"""`console data fetch | import | gaps`: market data into the store, and what it lacks."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from console.app import App, common_options, pass_app
from console.checklist.step import symbols_option
from console.errors import ConsoleError, UsageError
from console.market_data import fetch_all, fetch_range
from console.render import output_console
from training.data.csv_import import import_candle_csv
from training.data.market import TIMEFRAMES, check_symbol, check_timeframe
from training.data.store import CandleStore


def _symbols(value: str | None, app: App) -> list[str]:
    if value is None:
        return list(app.resources.feature_config().symbols)
    return symbols_option(value)


def data_root_for(app: App, override: str | None) -> Path:
    return Path(override).expanduser() if override else app.resources.paths.data


def _timeframes(value: str) -> list[str]:
    tfs = [t.strip() for t in value.split(",") if t.strip()]
    for tf in tfs:
        check_timeframe(tf)
    if not tfs:
        raise UsageError("no timeframes given", hint=f"use some of {','.join(TIMEFRAMES)}")
    return tfs


class DataCheckFailed(ConsoleError):
    """Fetched higher timeframes disagree with resampled one-minute candles (exit 1)."""


@click.group("data")
def data_group() -> None:
    """Fetch, import and inspect market data (candles, CoinGecko fundamentals, the daily tables)."""


@data_group.command("fetch")
@click.option("--symbols", help="Comma-separated symbols (default: the configured ones).")
@click.option("--timeframes", default="1m,5m,15m,1h", show_default=True, help="Comma-separated timeframes.")
@click.option("--days", type=click.IntRange(1, 3650), help="The last N days (default 30).")
@click.option("--start", help="Start date (UTC), YYYY-MM-DD or ISO 8601.")
@click.option("--end", help="End date (UTC); default now.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data directory (default: <state>/data).")
@click.option("--no-fundamentals", is_flag=True, help="Skip CoinGecko fundamentals.")
@common_options
@pass_app
def fetch_cmd(
    app: App,
    symbols: str | None,
    timeframes: str,
    days: int | None,
    start: str | None,
    end: str | None,
    data_dir: str | None,
    no_fundamentals: bool,
) -> None:
    """Fetch candles (resuming an interrupted fetch) and fundamentals into the store."""
    syms = _symbols(symbols, app)
    tfs = _timeframes(timeframes)
    if days and (start or end):
        raise UsageError("give --days or --start/--end, not both")
    lo, hi = fetch_range(days, start, end)
    root = data_root_for(app, data_dir)
    err = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done, total=total)

        outcome = fetch_all(
            app.resources, syms, tfs, lo, hi, fundamentals=not no_fundamentals, data_root=root, progress=progress
        )
    for report in outcome.reports:
        click.echo(report.summary())
    for symbol, rows in outcome.fundamentals_rows.items():
        click.echo(f"{symbol} fundamentals: {rows} new rows")
    bad = [c for c in outcome.checks if not c.ok]
    for check in outcome.checks:
        click.echo(check.summary())
    if bad:
        raise DataCheckFailed(
            f"{len(bad)} timeframe(s) disagree with resampled 1m candles",
            hint="see the lines above; fetch again or report the exchange data",
        )


@data_group.command("import")
@click.argument("symbol")
@click.argument("timeframe")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data directory (default: <state>/data).")
@common_options
@pass_app
def import_cmd(app: App, symbol: str, timeframe: str, file: str, data_dir: str | None) -> None:
    """Import a CSV of candles (open_time/timestamp/time; unix s, ms or ISO times)."""
    check_symbol(symbol)
    check_timeframe(timeframe)
    store = CandleStore(data_root_for(app, data_dir))
    rows = import_candle_csv(store, symbol, timeframe, Path(file))
    click.echo(f"imported {rows} {timeframe} candles for {symbol} from {file}")
    click.echo(store.gap_report(symbol, timeframe).summary())


@data_group.command("gaps")
@click.option("--symbols", help="Comma-separated symbols (default: every symbol in the store).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data directory (default: <state>/data).")
@click.option(
    "--limit", type=click.IntRange(0, 1000), default=5, show_default=True, help="Longest gaps listed per file."
)
@common_options
@pass_app
def gaps_cmd(app: App, symbols: str | None, limit: int, data_dir: str | None) -> None:
    """Missing candles inside the fetched ranges, per symbol and timeframe."""
    store = CandleStore(data_root_for(app, data_dir))
    syms = symbols_option(symbols) if symbols is not None else store.symbols()
    if not syms:
        click.echo(f"no candles in {store.data_dir} (run `console data fetch`)")
        return
    table = Table(title=f"gaps in {store.data_dir}", title_justify="left")
    for col in ("symbol", "timeframe", "present", "expected", "missing", "gaps", "longest"):
        table.add_column(col, justify="right" if col in ("present", "expected", "missing", "gaps") else "left")
    details = []
    for symbol in syms:
        for tf in store.timeframes(symbol) or []:
            r = store.gap_report(symbol, tf)
            longest = r.longest.describe() if r.longest else ""
            table.add_row(symbol, tf, str(r.present), str(r.expected), str(r.missing), str(len(r.gaps)), longest)
            for g in sorted(r.gaps, key=lambda g: -g.candles)[:limit]:
                details.append(f"{symbol} {tf}: {g.describe()}")
        if not store.timeframes(symbol):
            table.add_row(symbol, "-", "0", "0", "0", "0", "nothing fetched")
    output_console().print(table)
    for line in details:
        click.echo(line)


def register(cli: click.Group) -> None:
    from console.commands.data_daily import backfill_cmd, daily_cmd

    data_group.add_command(daily_cmd)
    data_group.add_command(backfill_cmd)
    cli.add_command(data_group)
