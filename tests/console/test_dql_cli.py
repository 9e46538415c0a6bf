"""`console dql`: bad input refused in one line before anything starts; a saved agent
judged again and reported as a page with its figures."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.console.cli import assert_one_line_error, console
from training.families import get_family
from training.families.dql.synthetic import write_market_file


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_market_file(tmp_path_factory.mktemp("features"), "BTC-USD", 2400, 3, seed=5, signal=0.0)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--agent-type", "ppo"], "ppo"),
        (["--episodes", "0"], "episodes"),
        (["--episodes", "-2"], "episodes"),
    ],
)
def test_bad_training_flags_are_refused_in_one_line(args: list[str], needle: str, data_file: Path) -> None:
    proc = console("dql", "full-workflow", "--data-file", str(data_file), "--experiment-name", "e1", *args)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_a_data_file_too_short_for_one_episode_is_refused(tmp_path: Path) -> None:
    short = write_market_file(tmp_path, "BTC-USD", 700, 3)
    proc = console("dql", "train", "--data-file", str(short), "--episode-length", "512")
    assert_one_line_error(proc, 2, "episode")


def test_a_data_file_missing_columns_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_text("not a feature file")
    proc = console("dql", "train", "--data-file", str(bad))
    assert_one_line_error(proc, 2, "bad.parquet")


def test_an_unsupported_backend_is_refused(data_file: Path) -> None:
    proc = console("dql", "train", "--data-file", str(data_file), "--episode-length", "64", "--backend", "batch")
    assert_one_line_error(proc, 2, "batch")


def test_a_saved_agent_is_judged_and_reported_with_figures(tmp_path: Path, data_file: Path) -> None:
    family = get_family("dql")
    job = family.synthetic_job(tmp_path / "job", skill=False, seed=5)
    job = replace(job, params={**job.params, "episodes": 1, "episode_length": 64})  # what is judged, not how well
    fitted = family.fit(job, lambda p: None)
    family.evaluate(fitted, job)
    folder = tmp_path / "model"
    folder.mkdir()
    family.save(fitted, folder)
    judged = console("dql", "evaluate", "--model", str(folder), "--data-file", str(job.inputs["features"]))
    assert judged.returncode == 0, judged.stderr
    assert "beats buy and hold" in judged.stdout and "verdict: FAILED" in judged.stdout
    report = console(
        "dql", "report", "--model", str(folder), "--data-file", str(job.inputs["features"]),
        "--experiment-name", "noise", cwd=tmp_path,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert "verdict: FAILED" in report.stdout
    page = (tmp_path / "results" / "noise" / "report.html").read_text()
    assert "FAILED" in page
    for png in ("equity.png", "drawdown.png", "actions.png", "training.png"):
        assert f'src="{png}"' in page
        assert (tmp_path / "results" / "noise" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
