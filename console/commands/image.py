"""`console image build | push`: the training image, for operators who have a Docker engine.

    console image build [--tag TAG]     docker build -t TAG -f Dockerfile <checkout>
    console image push [--tag TAG]      docker login to the tag's ECR registry (the password from
                                        ECR's GetAuthorizationToken, on stdin, never in argv or
                                        logs), then docker push TAG

TAG defaults to ``SAGEMAKER_DOCKER_IMAGE`` (what `console infra deploy` prints). Without a
``docker`` client on PATH both say so in one line (exit 2).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import click

from console.app import App, common_options, pass_app
from console.errors import StepFailed, UsageError

DEFAULT_TAG = "retrain-console-training:latest"
_ECR = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/[a-z0-9._/-]+(:[\w.-]+)?$")


def checkout_root() -> Path:
    """The checkout the console runs from (where the Dockerfile is)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "Dockerfile").is_file():
        raise UsageError(f"no Dockerfile in {root}", hint="build the image from a checkout of retrain-console")
    return root


def build_command(docker: str, tag: str, root: Path) -> list[str]:
    return [docker, "build", "--tag", tag, "--file", str(root / "Dockerfile"), str(root)]


def _docker() -> str:
    found = shutil.which("docker")
    if found is None:
        raise UsageError("no docker client on PATH", hint="install Docker, or build the image where one runs")
    return found


def _tag(tag: str | None) -> str:
    return tag or os.environ.get("SAGEMAKER_DOCKER_IMAGE") or DEFAULT_TAG


def _run(argv: list[str], *, stdin: str | None = None) -> None:
    done = subprocess.run(argv, input=stdin, text=True)
    if done.returncode != 0:
        raise StepFailed(f"`{' '.join(argv[:2])}` exited {done.returncode}")


@click.group("image")
def image_group() -> None:
    """The training image (Dockerfile at the checkout's root)."""


@image_group.command("build")
@click.option("--tag", help=f"Image tag (default SAGEMAKER_DOCKER_IMAGE, else {DEFAULT_TAG}).")
@common_options
@pass_app
def build(app: App, tag: str | None) -> None:
    """Build the training image with the local Docker engine."""
    docker = _docker()
    _run(build_command(docker, _tag(tag), checkout_root()))
    click.echo(f"built {_tag(tag)}")


@image_group.command("push")
@click.option("--tag", help="ECR image URI (default SAGEMAKER_DOCKER_IMAGE).")
@common_options
@pass_app
def push(app: App, tag: str | None) -> None:
    """Log in to the tag's ECR registry and push the image."""
    from remote.providers.aws_client import call, make_client

    chosen = _tag(tag)
    match = _ECR.fullmatch(chosen)
    if match is None:
        raise UsageError(
            f"{chosen!r} is not an ECR image URI", hint="see `console infra show` (SAGEMAKER_DOCKER_IMAGE)"
        )
    docker = _docker()
    target = app.resources.aws_target()
    ecr = make_client("ecr", target)
    auth = call(target, "GetAuthorizationToken", ecr.get_authorization_token)["authorizationData"][0]
    user, _, password = base64.b64decode(auth["authorizationToken"]).decode().partition(":")
    registry = chosen.split("/", 1)[0]
    _run([docker, "login", "--username", user, "--password-stdin", registry], stdin=password)
    _run([docker, "push", chosen])
    click.echo(f"pushed {chosen}")


def register(cli: click.Group) -> None:
    cli.add_command(image_group)
