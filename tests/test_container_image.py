"""The training image's Dockerfile agrees with the repo (there is no Docker engine here to
build it): a pinned base image whose Python the project supports, sources that exist, the
pinned lock installed, and the entry point the container package serves with the mode
SageMaker passes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from training.container.__main__ import MODES

ROOT = Path(__file__).resolve().parent.parent


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_base_image_is_pinned_to_a_python_the_project_supports() -> None:
    [base] = [arg for op, arg in instructions() if op == "FROM"]
    match = re.fullmatch(r"python:(3)\.(\d+)\.(\d+)-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base)
    assert match, f"{base!r} is not an exact python:X.Y.Z-slim-<distro> tag"
    minimum = re.search(r'requires-python = ">=3\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert minimum and int(match.group(2)) >= int(minimum.group(1))


def test_copied_paths_exist_and_the_lock_it_installs_pins_torch() -> None:
    copies = [arg.split() for op, arg in instructions() if op == "COPY"]
    assert copies and all((ROOT / src).exists() for *srcs, _ in copies for src in srcs)
    assert ["training", "/opt/program/training"] in copies
    runs = " ".join(arg for op, arg in instructions() if op == "RUN")
    assert "pip install --no-deps -r /opt/program/requirements.lock" in runs
    assert "torch==2.13.0" in (ROOT / "requirements.lock").read_text().splitlines()


def test_the_entry_point_is_the_container_package_with_sagemakers_mode() -> None:
    ops = dict(instructions())
    assert json.loads(ops["ENTRYPOINT"]) == ["python", "-m", "training.container"]
    assert (ROOT / "training" / "container" / "__main__.py").is_file()
    [mode] = json.loads(ops["CMD"])
    assert mode == "train" and mode in MODES  # SageMaker runs `docker run IMAGE train`
    env = ops["ENV"]
    assert "PYTHONPATH=/opt/program" in env and "WORKDIR" in ops and ops["WORKDIR"] == "/opt/program"


def test_console_image_build_without_docker_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import subprocess

    from console.commands.image import build_command
    from tests.e2e_support import CONSOLE, console_env

    env = {**console_env(tmp_path / "home", tmp_path / "state"), "PATH": str(tmp_path / "no-docker")}
    done = subprocess.run([*CONSOLE, "image", "build"], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr.strip()) == (
        2, "console: error: no docker client on PATH (install Docker, or build the image where one runs)")  # fmt: skip
    assert build_command("docker", "t:1", ROOT) == ["docker", "build", "--tag", "t:1", "--file",
                                                   str(ROOT / "Dockerfile"), str(ROOT)]  # fmt: skip
