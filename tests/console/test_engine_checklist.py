"""`console run --checklist engine` end to end on the sandbox, as an operator runs it: on a random
walk no head earns after costs, nothing becomes champion, and the run exits 4 with the summary
written; an unknown symbol set or product is bad input (exit 2, one line)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from types import SimpleNamespace
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
    # The operator's screen, opened on the run the engine drove, counts the coins by state.
    assert _board(Path(state["RC_STATE_DIR"]))[0] == "3 coins: queued 0 · running 0 · done 3 · failed 0 · skipped 0"


def test_on_batch_the_children_fetch_the_candles_and_the_heads_read_their_feature_files(
    state: dict[str, str], tmp_path: Path
) -> None:
    import console as package

    shipped = Path(package.__file__).parent / "checklist" / "checklists" / "engine.toml"
    small = tmp_path / "engine-batch.toml"
    small.write_text(shipped.read_text().replace("days = 14", "days = 7").replace("children = 8", "children = 2"))
    proc = console("run", "--checklist", str(small), "--symbols", "top3", "--backend", "batch", env=state, timeout=300)
    assert proc.returncode == 4, (proc.stdout[-2000:], proc.stderr)
    assert "3 coins ready on Batch" in " ".join(proc.stdout.split())  # two fetch children built all three
    data = Path(state["RC_STATE_DIR"]) / "data"
    # What came back from the fetch: a few numbers per coin, and the encoder fitted from them.
    [moments] = [p for p in (Path(state["RC_STATE_DIR"]) / "runs").glob("*/moments") if p.is_dir()]  # the run's own
    assert sorted(p.name for p in moments.iterdir()) == ["BTC-USD.npz", "ETH-USD.npz", "SOL-USD.npz"]
    encoder = json.loads((data / "engine" / "encoder" / "encoder.json").read_text())
    summary = json.loads(sorted(data.glob("models/summary/*/engine_summary.json"))[-1].read_text())
    assert summary["encoder"] == encoder["hash"] and encoder["coins"] == ["BTC-USD", "ETH-USD", "SOL-USD"]
    for coin, row in summary["coins"].items():  # the heads' job read the children's feature files
        assert row["state"] == "ok" and SEED_FILES <= {p.name for p in (data / "models" / row["model_dir"]).iterdir()}


def _board(state_dir: Path) -> list[str]:
    """The engine board of the newest run, as `console tui` shows it (its feed reads the real store)."""
    import asyncio

    from console.settings import Settings
    from console.state import StateStore
    from console.tui.app import OperatorApp
    from console.tui.readings import Reading

    store = StateStore.open(state_dir)
    run_id = store.list_runs(1)[0].id
    kinds = [(e.kind, e.data.get("state")) for e in store.events(run_id) if e.kind.startswith("engine.")]
    assert kinds.count(("engine.coin", "running")) == 3 and kinds.count(("engine.coin", "done")) == 3, kinds

    async def scenario() -> list[str]:
        app = OperatorApp(Settings(state_dir=state_dir), store, run_id=run_id, poll_s=0.1, reading_every_s=3600,
                          readings=lambda: Reading("host", util_pct=1.0, mem_pct=1.0))  # fmt: skip
        async with app.run_test(size=(130, 40)) as pilot:
            for _ in range(200):
                if app.coins.coins and app.snapshot is not None:
                    break
                await pilot.pause(0.05)
            return str(app.query_one("#engine-board").render()).splitlines()

    return asyncio.run(scenario())


def test_an_unknown_symbol_set_is_bad_input(state: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[checklist]\nname = "bad"\n[params]\nsymbol_set = "everything"\n[[steps]]\nname = "engine-symbols"\n')
    assert_one_line_error(console("run", "--checklist", str(bad), env=state), 2, "unknown symbol set 'everything'")


class _Urls:
    def __init__(self, url: str) -> None:
        self.coinbase, self.coingecko = url, f"{url}/api/v3"


class _MarketOnly:
    """What symbol resolution and the costs step ask of `console.resources.Resources`, at a real simulator."""

    def __init__(self, url: str, data: Path | None = None) -> None:
        self.url = url
        self.paths = SimpleNamespace(data=data)

    def market_urls(self) -> _Urls:
        return _Urls(self.url)

    def coingecko_key(self) -> str:
        return "CG-" + secrets.token_urlsafe(12)  # the simulator here asks for none; any key will do


def test_top_n_follows_market_cap_and_an_unlisted_product_is_bad_input() -> None:
    from console.engine_work import resolve_symbols
    from console.errors import UsageError
    from remote.sandbox.market_server import MarketSimulator

    with MarketSimulator(rate_limit_per_s=1000) as sim:
        market = _MarketOnly(sim.url)
        top = resolve_symbols(market, "top400")  # type: ignore[arg-type]  # market data only
        assert len(top) == 400 and top[:3] == ["BTC-USD", "ETH-USD", "SOL-USD"]
        assert resolve_symbols(market, "ETH-USD,AAB-USD") == ["ETH-USD", "AAB-USD"]  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="unknown symbol.* NOPE-USD: the exchange lists no such product"):
            resolve_symbols(market, "BTC-USD,NOPE-USD")  # type: ignore[arg-type]
        # A recent listing has candles only since it listed: the engine meets a short history.
        import httpx

        from remote.sandbox.universe import LISTED_DAYS_AGO, listed_since

        coin = next(iter(LISTED_DAYS_AGO))
        now = int(sim.clock())
        rows = httpx.get(f"{sim.url}/products/{coin}/candles",
                         params={"granularity": 3600, "start": now - 12 * 86400, "end": now}).json()  # fmt: skip
        assert rows and min(r[0] for r in rows) >= listed_since(coin, now) > now - 12 * 86400


def test_a_coin_delisted_mid_run_is_skipped_with_its_reason_and_leaves_no_costs(tmp_path: Path) -> None:
    from console.engine_work import measure_costs, resolve_symbols
    from console.errors import UsageError
    from remote.sandbox.market_server import MarketSimulator
    from training.data.coinbase import CoinbaseClient, fetch_candles
    from training.data.store import CandleStore
    from training.errors import TrainingInputError

    with MarketSimulator(rate_limit_per_s=1000) as sim:
        market = _MarketOnly(sim.url, tmp_path)
        coins = resolve_symbols(market, "BTC-USD,ETH-USD,SOL-USD")  # type: ignore[arg-type]  # market data only
        costs, gone = measure_costs(market, coins, fee_bps=10.0, notional=1000.0)  # type: ignore[arg-type]
        assert gone == {} and (tmp_path / "engine" / "costs" / "SOL-USD.json").is_file()
        sim.delist("SOL-USD")  # between the run's data step and its costs step
        costs, gone = measure_costs(market, coins, fee_bps=10.0, notional=1000.0)  # type: ignore[arg-type]
        assert list(gone) == ["SOL-USD"] and gone["SOL-USD"].startswith("delisted")
        assert {"BTC-USD", "ETH-USD"} <= set(costs) and "SOL-USD" not in costs
        assert not (tmp_path / "engine" / "costs" / "SOL-USD.json").exists()  # an old figure is not today's
        # The data step meets it as bad input for that coin (skipped, the run goes on) ...
        with CoinbaseClient(sim.url) as client, pytest.raises(TrainingInputError, match="HTTP 404"):
            now = int(sim.clock())
            fetch_candles(client, CandleStore(tmp_path / "data"), "SOL-USD", "1m", now - 3600, now)
        # ... and a new run that names it is refused in one line.
        with pytest.raises(UsageError, match="SOL-USD: the exchange lists no such product"):
            resolve_symbols(market, "BTC-USD,SOL-USD")  # type: ignore[arg-type]


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
