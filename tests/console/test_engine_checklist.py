"""`console run --checklist engine` end to end on the sandbox, as an operator runs it: on a random
walk no head earns after costs, nothing becomes champion, and the run exits 4 with the summary
written; an unknown symbol set or product is bad input (exit 2, one line)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from tests.console.cli import assert_one_line_error, console

pytestmark = pytest.mark.slow
SEED_FILES = {"model.bin", "config.json", "metrics.json", "costs.json", "features.json", "sha256.txt",
              "features.parquet", "split_indices.json", "training_log.json"}  # fmt: skip


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("engine")
    env = {"RC_STATE_DIR": str(root / "state"), "RC_SANDBOX__MARKET_MODE": "random_walk", "HOME": str(root)}
    yield env
    console("sandbox", "down", env=env)


def test_engine_on_a_random_walk_promotes_no_head_and_exits_4(state: dict[str, str], tmp_path: Path) -> None:
    import console as package

    shipped = Path(package.__file__).parent / "checklist" / "checklists" / "engine.toml"
    # The smallest honest run: the three largest coins (two feature sets), 7 days of minutes.
    small = tmp_path / "engine-small.toml"
    small.write_text(shipped.read_text().replace("days = 14", "days = 7"))
    proc = console("run", "--checklist", str(small), "--symbols", "top3", env=state, timeout=300)
    assert proc.returncode == 4, (proc.stdout[-2000:], proc.stderr)
    assert "no head earned after costs" in proc.stdout
    models = Path(state["RC_STATE_DIR"]) / "data" / "models"
    summary = json.loads(next(models.glob("summary/*/engine_summary.json")).read_text())
    assert sorted(summary["coins"]) == ["BTC-USD", "ETH-USD", "SOL-USD"] and summary["champions"] == []
    assert next(models.glob("runs/*/status.json")).is_file()
    assert not list(models.glob("champions/*.json"))
    roster = json.loads((models / "roster.json").read_text())
    assert {s: e["latest_passed"] for s, e in roster["symbols"].items()} == dict.fromkeys(summary["coins"], False)
    for coin, row in summary["coins"].items():
        folder = models / row["model_dir"]
        assert SEED_FILES <= {p.name for p in folder.iterdir()}, coin
        costs = json.loads((folder / "costs.json").read_text())
        assert costs["fee_bps"] == 10.0 and costs["spread_bps"] > 0  # measured from the book
        assert any(line.startswith("earns after costs") for line in row["reasons"])


def test_an_unknown_symbol_set_is_bad_input(state: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[checklist]\nname = "bad"\n[params]\nsymbol_set = "everything"\n[[steps]]\nname = "engine-symbols"\n')
    assert_one_line_error(console("run", "--checklist", str(bad), env=state), 2, "unknown symbol set 'everything'")


def test_a_product_the_exchange_does_not_list_is_bad_input(state: dict[str, str]) -> None:
    proc = console("run", "--checklist", "engine", "--symbols", "NOPE-USD", "--new", env=state, timeout=120)
    assert proc.returncode == 2, (proc.stdout[-1500:], proc.stderr)
    assert "the exchange lists no such product" in proc.stdout


def test_progress_over_many_coins_is_one_line_of_counts() -> None:
    from console.engine_work import CoinOutcome
    from console.steps.engine import Tally

    tally = Tally(400)
    for i in range(300):
        tally.add(CoinOutcome(f"C{i:03d}-USD", "ok", figures={"seconds": 1.0 + (i == 7) * 40}))
    tally.add(CoinOutcome("BAD-USD", "failed", "timed out"))
    done, total, line = tally.add(CoinOutcome("NEW-USD", "skipped", "2 days of history"))
    assert (done, total) == (302, 400)
    assert line == "failed 1 ok 300 skipped 1; slowest C007-USD 41s; failed BAD-USD, NEW-USD"
