"""`console infra deploy | show | diff | destroy`: the training stack (`remote.infra`).

    console infra deploy     bucket, execution role, policy, ECR repository, the engine's Batch
                             queue on spot; prints the .env lines and the console.toml lines
    console infra diff       what a deploy would change (nothing: exit 0 and says so)
    console infra show       the stack's state and its .env lines
    console infra destroy    the stack deleted; the bucket and the repository are kept

On the sandbox profile the stack goes to moto. ``TRAINING_USER_NAME`` (or ``--user``) names
the IAM user the training policy is attached to. ``--batch-subnets`` and
``--batch-security-groups`` (``BATCH_SUBNET_IDS``, ``BATCH_SECURITY_GROUP_IDS``) add the
engine's Batch queue; left out, a deploy keeps what the stack has. Every command takes ``--json``.
``deploy`` and ``show`` take ``--write-config``: the settings go into console.toml too
(`console.infra_config`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from console.app import App, common_options, pass_app

if TYPE_CHECKING:  # pragma: no cover
    from remote.infra import TrainingStack


def _stack(app: App, user: str | None, subnets: str | None = None, groups: str | None = None) -> "TrainingStack":
    from remote.infra import TrainingStack

    return TrainingStack(app.resources.aws_target(), user=user or app.settings.training_user_name or "",
                         batch_subnets=subnets, batch_security_groups=groups)  # fmt: skip


def _write_config(app: App, outputs: Any) -> str:
    """Write the stack's settings into the operator's console.toml; the line saying what went where."""
    from console.infra_config import config_target, write_config
    from console.settings import find_config_file

    path = config_target(find_config_file(app.config, dict(os.environ)))
    top = {"aws_region": outputs.region, "sagemaker_role_arn": outputs.role_arn, "s3_bucket": outputs.bucket}
    batch = {}
    if outputs.batch_queue:
        batch = {"queue": outputs.batch_queue, "compute_environment": outputs.batch_compute_environment,
                 "job_definition": outputs.batch_job_definition, "bucket": outputs.bucket}  # fmt: skip
    keys = write_config(path, top, batch)
    return f"wrote {', '.join(keys)} to {path}"


def _batch_options(command: Any) -> Any:
    """``--batch-subnets`` and ``--batch-security-groups`` (comma-separated ids)."""
    command = click.option("--batch-security-groups", "groups", envvar="BATCH_SECURITY_GROUP_IDS",
                           help="Security groups of the engine's Batch instances (default: what the stack has).")(command)  # fmt: skip
    return click.option("--batch-subnets", "subnets", envvar="BATCH_SUBNET_IDS",
                        help="Subnets for the engine's Batch queue, comma-separated (default: what the stack has).")(command)  # fmt: skip


@click.group("infra")
def infra_group() -> None:
    """The training stack (CloudFormation): bucket, role, policy, ECR repository, Batch queue."""


@infra_group.command("deploy")
@click.option("--user", help="IAM user to attach the training policy to (default TRAINING_USER_NAME).")
@_batch_options
@click.option("--write-config", is_flag=True, help="Also write the settings into console.toml (other lines kept).")
@click.option("--json", "json_out", is_flag=True, help="Print the result as one JSON object.")
@common_options
@pass_app
def deploy(
    app: App, user: str | None, subnets: str | None, groups: str | None, write_config: bool, json_out: bool
) -> None:
    """Deploy the training stack (idempotent: no change, nothing done); print the .env lines."""
    stack = _stack(app, user, subnets, groups)
    done = stack.deploy()
    wrote = _write_config(app, done.outputs) if write_config else None
    if json_out:
        click.echo(json.dumps({"action": done.action, "changes": list(done.changes), **asdict(done.outputs),
                               "env": done.outputs.env_lines(), "toml": done.outputs.batch_lines(),
                               "wrote": wrote}))  # fmt: skip
        return
    where = "the sandbox (moto)" if app.settings.is_sandbox else f"AWS {stack.target.region}"
    click.echo(f"stack {stack.name} {done.action} in {where}")
    for line in done.changes:
        click.echo(f"  {line}")
    click.echo("# put these in .env:")
    click.echo("\n".join(done.outputs.env_lines()))
    if done.outputs.batch_lines():
        click.echo("# and these in console.toml (the engine's --backend batch):")
        click.echo("\n".join(done.outputs.batch_lines()))
    if wrote:
        click.echo(wrote)


@infra_group.command("diff")
@click.option("--user", help="IAM user to attach the training policy to (default TRAINING_USER_NAME).")
@_batch_options
@click.option("--json", "json_out", is_flag=True, help="Print the changes as JSON.")
@common_options
@pass_app
def diff(app: App, user: str | None, subnets: str | None, groups: str | None, json_out: bool) -> None:
    """What `console infra deploy` would change."""
    stack = _stack(app, user, subnets, groups)
    changes = stack.diff()
    if json_out:
        click.echo(json.dumps({"stack": stack.name, "changes": changes}))
        return
    click.echo("\n".join(changes) if changes else f"stack {stack.name}: no changes")


@infra_group.command("show")
@click.option("--write-config", is_flag=True, help="Also write the settings into console.toml (other lines kept).")
@click.option("--json", "json_out", is_flag=True, help="Print the stack as one JSON object.")
@common_options
@pass_app
def show(app: App, write_config: bool, json_out: bool) -> None:
    """The stack's state and the .env lines of its outputs."""
    stack = _stack(app, None)
    found = stack.describe()
    outputs = stack.outputs()  # no stack: one line saying to deploy it
    status = (found or {}).get("StackStatus", "")
    wrote = _write_config(app, outputs) if write_config else None
    if json_out:
        click.echo(json.dumps({"stack": stack.name, "status": status, **asdict(outputs), "env": outputs.env_lines(),
                               "wrote": wrote}))  # fmt: skip
        return
    click.echo(f"stack {stack.name}: {status}")
    click.echo("\n".join(outputs.env_lines() + outputs.batch_lines()))
    if wrote:
        click.echo(wrote)


@infra_group.command("destroy")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "json_out", is_flag=True, help="Print the result as one JSON object.")
@common_options
@pass_app
def destroy(app: App, yes: bool, json_out: bool) -> None:
    """Delete the stack; the training bucket and the image repository are kept."""
    from console.errors import UsageError

    stack = _stack(app, None)
    if not yes and not app.settings.is_sandbox:
        raise UsageError(f"this deletes stack {stack.name} in {stack.target.where}", hint="pass --yes to confirm")
    kept = stack.destroy()
    if json_out:
        click.echo(json.dumps({"stack": stack.name, "deleted": bool(kept), "kept": list(kept)}))
        return
    click.echo(f"stack {stack.name} deleted; kept {' and '.join(kept)}" if kept else f"no stack {stack.name}")


def register(cli: click.Group) -> None:
    cli.add_command(infra_group)
