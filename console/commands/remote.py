"""`console sync`, `console exec` and `console models upload | download | list | sync | latest`.

By hand, through the same runner, sync and store the checklist steps use: the instance is
looked up in the state store (launched by a run or by `console instance launch`), its
host key pinned as the steps pin it.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from console.app import App, common_options, pass_app
from console.errors import UsageError
from console.numbers import FiniteFloatRange
from console.render import output_console

if TYPE_CHECKING:  # pragma: no cover
    from remote.ssh import SSHRunner

_INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _instance_id(value: str) -> str:
    if not _INSTANCE_ID.match(value):
        raise UsageError(f"{value!r} is not an instance id", hint="see `console instance list`")
    return value


def _runner(app: App, instance_id: str) -> "SSHRunner":
    return app.instances.runner(_instance_id(instance_id))


@click.command("sync")
@click.argument("local", type=click.Path(exists=True, file_okay=False))
@click.argument("destination", metavar="INSTANCE:REMOTE")
@click.option("--delete", is_flag=True, help="Remove files an earlier sync put there and that are gone locally.")
@click.option("--exclude", multiple=True, help="Extra .gitignore-style pattern (repeatable).")
@common_options
@pass_app
def sync_cmd(app: App, local: str, destination: str, delete: bool, exclude: tuple[str, ...]) -> None:
    """Delta-sync LOCAL to REMOTE on INSTANCE (changed files only, each landing whole)."""
    from remote.sync import sync_dir

    instance_id, sep, remote_dir = destination.partition(":")
    if not sep or not remote_dir:
        raise UsageError(f"{destination!r} is not INSTANCE:REMOTE", hint="e.g. i-0abc:rc/data")
    with _runner(app, instance_id) as runner:
        report = sync_dir(
            runner, Path(local), remote_dir, excludes=exclude, delete=delete, cache_dir=app.resources.paths.sync_cache
        )
    click.echo(f"{instance_id}:{remote_dir}: {report.summary()}")


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("instance_id", metavar="INSTANCE")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option(
    "--timeout",
    "timeout_s",
    type=FiniteFloatRange(min=1, max=7 * 86400),
    default=None,
    help="Give up after this many seconds.",
)
@common_options
@pass_app
def exec_cmd(app: App, instance_id: str, command: tuple[str, ...], timeout_s: float | None) -> None:
    """Run COMMAND on INSTANCE (after `--`), streaming its output; exits with its status.

    Each word is quoted for the remote shell: `console exec i-0abc -- ls -la 'a b'`.
    """
    with _runner(app, instance_id) as runner:
        result = runner.run(list(command), timeout_s=timeout_s, check=False, on_output=click.echo)
    if result.exit_status:
        sys.exit(result.exit_status if 0 < result.exit_status < 256 else 1)


@click.group("models")
def models_group() -> None:
    """The artifact store: upload a models directory, download a version, list versions."""


@models_group.command("upload")
@click.argument("local", type=click.Path(exists=True, file_okay=False))
@click.option("--run-id", required=True, help="The run the models came from (a tag, and part of the version name).")
@click.option("--gpu", default="unknown", show_default=True, help="What trained them (a tag).")
@click.option("--trained-date", default=None, help="YYYY-MM-DD (default: today, UTC).")
@common_options
@pass_app
def models_upload(app: App, local: str, run_id: str, gpu: str, trained_date: str | None) -> None:
    """Upload LOCAL (an artifact root) as a new version and point models/latest.json at it."""
    from remote.storage import ArtifactTags

    date = trained_date or datetime.now(timezone.utc).strftime("%Y-%m-%d")
    # Checked before the store is touched (which may start the sandbox): a real calendar date.
    try:
        if not re.match(r"^\d{4}-\d{2}-\d{2}$", date):
            raise ValueError(date)
        datetime.strptime(date, "%Y-%m-%d")
    except ValueError:
        raise UsageError(f"trained date {date!r} is not a YYYY-MM-DD date") from None
    store = app.resources.artifact_store()
    store.ensure_bucket()
    record = store.upload_version(Path(local), ArtifactTags(run_id=run_id, trained_date=date, gpu=gpu))
    click.echo(f"uploaded {len(record.files)} files as {record.version} to {store.describe()}")


@models_group.command("download")
@click.argument("version", default="latest")
@click.option(
    "--to",
    "dest",
    type=click.Path(file_okay=False),
    default=None,
    help="Models directory (default: <data_root>/models).",
)
@common_options
@pass_app
def models_download(app: App, version: str, dest: str | None) -> None:
    """Download VERSION (default: latest), sha256-checked, into the models directory."""
    from remote.storage import check_version

    # Checked before the store is touched (which may start the sandbox).
    if version != "latest":
        check_version(version)
    from console.transfer import champion_rules, place_version

    target = Path(dest).expanduser() if dest else app.resources.paths.models
    placed = place_version(app.resources.artifact_store(), version, target, app.resources.paths.downloads,
                           **champion_rules(app.resources))  # fmt: skip
    click.echo(f"downloaded {placed.version} ({placed.files} files) into {target}")


@models_group.command("list")
@click.option("--json", "json_out", is_flag=True, help="Print as JSON.")
@common_options
@pass_app
def models_list(app: App, json_out: bool) -> None:
    """Every stored version, oldest first; the one latest.json points at is marked."""
    store = app.resources.artifact_store()
    versions = store.list_versions()
    latest = store.latest()
    if json_out:
        click.echo(
            json.dumps(
                [
                    {
                        "version": v.version,
                        "run_id": v.tags.run_id,
                        "trained_date": v.tags.trained_date,
                        "gpu": v.tags.gpu,
                        "files": len(v.files),
                        "bytes": v.total_bytes,
                        "latest": latest is not None and v.version == latest.version,
                    }
                    for v in versions
                ]
            )
        )
        return
    table = Table(title=f"model versions in {store.describe()}", title_justify="left")
    for col in ("version", "run", "trained", "gpu", "files", "MiB", "latest"):
        table.add_column(col, justify="right" if col in ("files", "MiB") else "left")
    for v in versions:
        table.add_row(
            v.version,
            v.tags.run_id,
            v.tags.trained_date,
            v.tags.gpu,
            str(len(v.files)),
            f"{v.total_bytes / (1 << 20):.1f}",
            "*" if latest and v.version == latest.version else "",
        )
    output_console().print(table)


INVESTMENT_MODELS = "s3://investment-system-data/models"
"""Where the investment system's ``latest.json`` lives by default (the seed's bucket)."""


@models_group.command("latest")
@click.option(
    "--store",
    "store_url",
    default=INVESTMENT_MODELS,
    show_default=True,
    help="The bucket's models folder (s3://BUCKET/models, gs://, az://, or a directory).",
)
@click.option("--json", "json_out", is_flag=True, help="Print as JSON.")
@common_options
@pass_app
def models_latest(app: App, store_url: str, json_out: bool) -> None:
    """What the investment runtime would load from latest.json (regime, health), and why."""
    import tempfile

    from runtime_checks.investment import load_models

    store = app.resources.store_at(store_url)
    with tempfile.TemporaryDirectory() as cache:
        models = load_models(store, Path(cache))
    if json_out:
        click.echo(json.dumps({"version": models.version, "source": models.source, "reasons": models.reasons}))
        return
    click.echo(f"store: {store.describe()}")
    for line in models.lines():
        click.echo(line)


@models_group.command("sync")
@click.argument("source")
@click.argument("target")
@click.option("--version", "versions", multiple=True, help="Copy only this version (repeatable; default: all).")
@common_options
@pass_app
def models_sync(app: App, source: str, target: str, versions: tuple[str, ...]) -> None:
    """Copy model versions from SOURCE to TARGET (s3://, gs://, az:// or a local path), verified.

    Each file's sha256 is checked on the way; a rerun after an interruption sends only what
    is missing, and a version is listed in TARGET only once all its files are there.
    """
    from remote.storage import check_version
    from remote.storage.mirror import mirror_versions
    from remote.storage.urls import parse_store_url

    for where in (source, target):
        parse_store_url(where)  # bad URLs are bad input before anything is contacted
    for version in versions:
        if version != "latest":
            check_version(version)
    src, dst = app.resources.store_at(source), app.resources.store_at(target)
    report = mirror_versions(src, dst, versions=versions or None)
    click.echo(
        f"{src.describe()} -> {dst.describe()}: {len(report.copied)} version(s) copied "
        f"({report.files_sent} files sent, {report.files_skipped} already there), "
        f"{len(report.already)} already complete; latest {report.latest or 'unchanged'}"
    )


def register(cli: click.Group) -> None:
    cli.add_command(sync_cmd)
    cli.add_command(exec_cmd)
    cli.add_command(models_group)
