"""`console data daily | backfill`: the investment system's daily tables into the data bucket.

Exit codes: 0 written; 1 a source could not be reached (after retries); 2 bad input (a date
that is not one or has not closed, a non-trading day, an unknown symbol, a refused FRED key,
data that fails its checks). Nothing is written unless every day built and passed its checks.
"""

from __future__ import annotations

import json
import time

import click

from console.app import App, common_options, pass_app
from console.daily_data import (
    DATA_STORE,
    MAX_BACKFILL_DAYS,
    UNIVERSE,
    check_assets,
    parse_day,
    run_days,
    write_partitions,
)

_STORE_HELP = "The data bucket (s3://BUCKET, gs://, az://, or a directory)."


def _assets(value: str | None) -> list[str]:
    return check_assets(value.split(",")) if value else list(UNIVERSE)


@click.command("daily")
@click.option("--date", "day", help="The trading day to build (YYYY-MM-DD; default the last closed day).")
@click.option("--assets", help="Comma-separated asset symbols (default: the built-in universe).")
@click.option("--store", "store_url", default=DATA_STORE, show_default=True, help=_STORE_HELP)
@click.option("--json", "json_out", is_flag=True, help="Print the result as JSON.")
@common_options
@pass_app
def daily_cmd(app: App, day: str | None, assets: str | None, store_url: str, json_out: bool) -> None:
    """Build one day's context row and asset features from Stooq, FRED and GDELT, and upload them."""
    started = time.perf_counter()
    target = parse_day(day)
    symbols = _assets(assets)
    store = app.resources.store_at(store_url)
    built = run_days(app.resources, symbols, target, 1)
    keys = write_partitions(store, built)
    if json_out:
        row = built.context.iloc[0].to_dict()
        row["date"] = built.days[0]
        click.echo(
            json.dumps(
                {
                    "date": built.days[0],
                    "context": row,
                    "assets": int(len(built.features)),
                    "keys": keys,
                    "store": store.describe(),
                    "requests": built.requests,
                    "seconds": round(time.perf_counter() - started, 3),
                }
            )
        )
        return
    click.echo(f"{built.days[0]}: 1 context row and {len(built.features)} asset rows -> {store.describe()}")
    for key in keys:
        click.echo(f"  {key}")


@click.command("backfill")
@click.option("--days", type=click.IntRange(1, MAX_BACKFILL_DAYS), default=365, show_default=True,
              help="Trading days (partitions) to build, ending at --end.")  # fmt: skip
@click.option("--end", help="The last day (YYYY-MM-DD; default the last closed day).")
@click.option("--assets", help="Comma-separated asset symbols (default: the built-in universe).")
@click.option("--store", "store_url", default=DATA_STORE, show_default=True, help=_STORE_HELP)
@click.option("--json", "json_out", is_flag=True, help="Print the result as JSON.")
@common_options
@pass_app
def backfill_cmd(app: App, days: int, end: str | None, assets: str | None, store_url: str, json_out: bool) -> None:
    """Build and upload the newest --days trading days (one partition per table and day)."""
    started = time.perf_counter()
    last = parse_day(end)
    symbols = _assets(assets)
    store = app.resources.store_at(store_url)
    built = run_days(app.resources, symbols, last, days)
    upload_started = time.perf_counter()
    keys = write_partitions(store, built)
    seconds = {**built.seconds, "upload": round(time.perf_counter() - upload_started, 3)}
    seconds["total"] = round(time.perf_counter() - started, 3)
    summary = {
        "days": len(built.days),
        "first": built.days[0],
        "last": built.days[-1],
        "assets": len(symbols),
        "partitions": len(keys),
        "requests": built.requests,
        "store": store.describe(),
        "seconds": seconds,
    }
    if json_out:
        click.echo(json.dumps(summary))
        return
    click.echo(
        f"{summary['days']} day(s) {summary['first']}..{summary['last']}, {len(symbols)} assets: "
        f"{len(keys)} partitions -> {summary['store']} in {seconds['total']:.1f}s"
    )
