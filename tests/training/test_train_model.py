"""One symbol's training: model folder, model.pt contents, load/predict, resume, metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training import registry
from training.errors import CheckpointMismatch, FeatureHashMismatch
from training.metrics import TradingCosts, after_cost, auc, classification_metrics, pick_threshold
from training.families.lstm.config import TrainConfig
from training.families.lstm.saved import MODEL_KEYS, load_model, predict
from training.families.lstm.synthetic import synthetic_frame, synthetic_hash, write_synthetic_feature_file
from training.families.run import EVALUATION_FILE, VERDICT_FILE
from training.train import TrainJob, run_job

@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core box OpenMP spinning costs 5x."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = TrainConfig(epochs=2, window=16, horizon=1, longest_feature_window=10, hidden_size=8, num_layers=1,
                   batch_size=64, device="cpu")  # fmt: skip


def _job(tmp_path, *, n_features=4, rows=700, config=TINY, expected_hash=None, symbol="BTC-USD", write=True):
    if write:
        write_synthetic_feature_file(tmp_path / "FEATURES", symbol, rows, n_features)
    return TrainJob(
        symbol=symbol,
        features_dir=tmp_path / "FEATURES",
        out=tmp_path / "artifacts",
        config=config,
        costs=TradingCosts(),
        gates=registry.GateRules(),
        expected_hash=expected_hash or synthetic_hash(n_features),
    )


def _recorder(calls):
    return lambda event, **fields: calls.append((event, fields))


def test_training_publishes_a_complete_model_folder_whose_model_pt_carries_its_contract(tmp_path):
    calls = []
    job = _job(tmp_path, n_features=7, expected_hash=synthetic_hash(7))
    published = run_job(job, on_event=_recorder(calls))
    folder = published.folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        registry.ARTIFACT_FILES + (EVALUATION_FILE, VERDICT_FILE, "sha256.txt"))
    assert registry.verify_folder(folder) == []
    saved = torch.load(folder / "model.pt", weights_only=True)
    assert set(MODEL_KEYS) <= set(saved)
    assert saved["input_size"] == 7 == len(saved["feature_names"])  # from the data, not a constant
    assert saved["feature_hash"] == synthetic_hash(7)
    assert set(saved["scaler"]) == {"mean", "std"} and len(saved["scaler"]["mean"]) == 7
    assert saved["config"]["window"] == 16
    kinds = [event for event, _ in calls]
    assert kinds[0] == "start" and kinds.count("epoch") == 2 and kinds[-1] == "done"
    epoch = dict(calls[1][1])
    assert {"symbol", "epoch", "epochs", "loss", "val_loss", "val_metric"} <= set(epoch)
    assert not job.checkpoint.exists()  # the finished job cleans its checkpoint


def test_metrics_cover_model_and_both_baselines_with_after_cost_results(tmp_path):
    published = run_job(_job(tmp_path), on_event=_recorder([]))
    metrics = json.loads((published.folder / "metrics.json").read_text())
    for block in (metrics["model"], metrics["baselines"]["majority"], metrics["baselines"]["last_move"]):
        assert {"accuracy", "f1", "auc", "log_loss", "after_cost"} <= set(block)
        assert block["after_cost"]["round_trip_cost_bps"] == pytest.approx(26.0)  # 2 * (10 + 2/2 + 2) bps
    verdict = json.loads((published.folder / VERDICT_FILE).read_text())
    assert verdict["passed"] == (list(published.reasons) == []) == published.passed
    assert verdict["family"] == "lstm" and verdict["lines"]
    assert metrics["baselines"]["majority"]["auc"] == pytest.approx(0.5)
    # Where "up" begins and the band were both chosen on the validation part, and the record says so.
    assert metrics["decision"]["chosen_on"] == "validation" and isinstance(metrics["decision"]["logit_shift"], float)


def test_loaded_model_predicts_from_a_frame_and_refuses_one_missing_a_feature(tmp_path):
    published = run_job(_job(tmp_path), on_event=_recorder([]))
    model = load_model(published.folder / "model.pt", expected_feature_hash=synthetic_hash(4))
    frame = synthetic_frame(40, 4, seed=9)
    call = predict(model, frame)
    assert call.direction in (1, -1) and 0.0 <= call.probability_up <= 1.0 and 0.0 <= call.confidence <= 1.0
    same = model.predict(frame[list(model.feature_names)].to_numpy())
    assert same.probability_up == pytest.approx(call.probability_up)
    with pytest.raises(CheckpointMismatch, match="lacks: f3"):
        model.predict(frame.drop(columns=["f3"]))
    with pytest.raises(CheckpointMismatch, match="trained on feature set"):
        load_model(published.folder / "model.pt", expected_feature_hash=synthetic_hash(5))


def test_interrupted_job_resumes_from_its_last_epoch(tmp_path):
    job = _job(tmp_path, config=TINY.with_overrides({"epochs": 3, "patience": 10}))

    def die_after_first_epoch(event, **fields):
        if event == "epoch":
            raise KeyboardInterrupt  # stands in for a spot interruption right after epoch 1's checkpoint

    with pytest.raises(KeyboardInterrupt):
        run_job(job, on_event=die_after_first_epoch)
    assert job.checkpoint.exists()
    calls = []
    published = run_job(job, on_event=_recorder(calls))
    assert calls[0][1]["resumed_from"] == 1
    assert [fields["epoch"] for event, fields in calls if event == "epoch"] == [2, 3]
    log = json.loads((published.folder / "training_log.json").read_text())
    assert [entry["epoch"] for entry in log] == [1, 2, 3]


def test_checkpoint_from_another_feature_set_is_refused(tmp_path):
    job = _job(tmp_path, config=TINY.with_overrides({"epochs": 3}))

    def die(event, **fields):
        if event == "epoch":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(job, on_event=die)
    write_synthetic_feature_file(tmp_path / "FEATURES", "BTC-USD", 700, 5)  # the features changed under it
    rerun = _job(tmp_path, n_features=5, config=TINY.with_overrides({"epochs": 3}), write=False)
    with pytest.raises(CheckpointMismatch) as excinfo:
        run_job(rerun, on_event=_recorder([]))
    assert "trained on feature set" in str(excinfo.value) and excinfo.value.exit_code == 2


def test_auc_and_costs_behave_as_documented():
    y = np.array([0, 0, 1, 1])
    assert auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auc(y, np.full(4, 0.5)) == 0.5
    assert classification_metrics(y, np.array([0.1, 0.2, 0.8, 0.9]))["f1"] == 1.0
    free = after_cost(np.array([0.9, 0.1]), np.array([0.01, -0.01]), 1, TradingCosts(0, 0, 0))
    paid = after_cost(np.array([0.9, 0.1]), np.array([0.01, -0.01]), 1, TradingCosts(10, 2, 2))
    assert free["net_return"] == pytest.approx(0.02)
    assert paid["net_return"] == pytest.approx(0.02 - 2 * 0.0026)
    costs = TradingCosts.for_symbol({"default": {"fee_bps": 5}, "ETH-USD": {"spread_bps": 1}}, "ETH-USD")
    assert (costs.fee_bps, costs.spread_bps, costs.slippage_bps) == (5, 1, 2)


def test_the_band_is_chosen_on_the_samples_given_and_ties_go_to_the_narrower_one():
    costs = TradingCosts(10, 2, 2)
    # A jittery call around 0.5 on a steady rise: a wide band stops paying for the jitter.
    p = np.array([0.7, 0.48, 0.6, 0.47, 0.62, 0.49, 0.65, 0.46] * 20)
    moves = np.full(len(p), 0.001)
    band, net = pick_threshold(p, moves, 1, costs)
    assert band >= 0.05 and net == pytest.approx(after_cost(p, moves, 1, costs, band)["net_return"])
    assert net > after_cost(p, moves, 1, costs, 0.0)["net_return"]
    assert pick_threshold(np.full(10, 0.9), np.full(10, 0.001), 1, costs) == (0.0, pytest.approx(0.01 - 0.0026))
    assert pick_threshold(np.full(10, 0.9), np.full(10, 0.001), 1, costs, floor=0.1)[0] == 0.1


def test_a_wider_band_that_trades_too_rarely_to_be_judged_is_never_chosen():
    costs = TradingCosts(10, 2, 2)
    p = np.array([0.7, 0.48, 0.6, 0.47, 0.62, 0.49, 0.65, 0.46] * 20)
    moves = np.full(len(p), 0.001)
    wide, _ = pick_threshold(p, moves, 1, costs)
    trades = after_cost(p, moves, 1, costs, wide)["trades"]
    assert wide > 0.0 and trades < 10  # the best band on these samples trades a handful of times
    band, net = pick_threshold(p, moves, 1, costs, min_trades=trades + 1)
    assert band < wide and after_cost(p, moves, 1, costs, band)["trades"] > trades
    assert net == pytest.approx(after_cost(p, moves, 1, costs, band)["net_return"])


def test_recentring_finds_the_logit_shift_that_fits_the_labels_and_moves_the_models_output_by_it():
    from training.families.lstm.network import DirectionLSTM
    from training.families.lstm.recenter import MAX_SHIFT, logit_shift, shift_output

    rng = np.random.default_rng(3)
    z = rng.normal(0.0, 1.5, 20_000)
    up = rng.random(len(z)) < 1 / (1 + np.exp(-z))
    biased = 1 / (1 + np.exp(-(z + 0.8)))  # ranks as well as the truth, calls "up" far too often
    shift = logit_shift(biased, up)
    assert shift == pytest.approx(-0.8, abs=0.05)
    assert logit_shift(1 / (1 + np.exp(-z)), up) == pytest.approx(0.0, abs=0.05)
    assert logit_shift(np.full(10, 0.9), np.ones(10)) == 0.0  # one class only: nothing to fit
    assert logit_shift(np.full(100, 1e-9), np.arange(100) % 2 == 0) == MAX_SHIFT

    torch.manual_seed(0)
    model = DirectionLSTM(4, hidden_size=8, num_layers=1).eval()
    windows = torch.randn(5, 16, 4)
    with torch.no_grad():
        before = model(windows)
        shift_output(model, -0.8)
        after = model(windows)
    assert torch.allclose(after, before - 0.8, atol=1e-6)


def test_the_rule_keeps_a_position_while_its_side_holds_and_pays_on_changes():
    costs = TradingCosts(10, 2, 2)  # 13 bps a side, 26 bps a round trip
    moves = np.array([0.01, 0.01, 0.01, -0.01, -0.01])
    held = after_cost(np.array([0.9, 0.8, 0.7, 0.2, 0.1]), moves, 1, costs)
    # Long three times in a row is one position; the reversal pays both sides; the end closes.
    assert held["trades"] == 2 and held["decisions"] == 5
    assert held["costs_paid"] == pytest.approx(0.0013 + 0.0026 + 0.0013)
    assert held["net_return"] == pytest.approx(0.05 - 0.0052)
    # Inside the band the side already held is kept; before the first call the bot is flat.
    banded = after_cost(np.array([0.55, 0.9, 0.5, 0.45, 0.1]), np.array([0.5, 0.01, 0.02, 0.03, -0.01]), 1, costs,
                        threshold=0.1)
    assert banded["trades"] == 2 and banded["decisions"] == 4
    assert banded["net_return"] == pytest.approx(0.01 + 0.02 + 0.03 + 0.01 - 0.0013 - 0.0026 - 0.0013)
    # Decisions every horizon-th bar: the samples between them are not traded.
    spaced = after_cost(np.array([0.9, 0.1, 0.9, 0.1]), np.array([0.01, 0.5, 0.01, 0.5]), 2, costs)
    assert spaced["decisions"] == 2 and spaced["net_return"] == pytest.approx(0.02 - 0.0026)


def test_a_file_claiming_this_codes_spec_version_must_carry_that_specs_hash(tmp_path):
    from training.features.spec import SPEC_VERSION

    write_synthetic_feature_file(tmp_path / "FEATURES", "BTC-USD", 700, 4, spec_version=SPEC_VERSION)
    with pytest.raises(FeatureHashMismatch, match="its spec hashes to"):
        run_job(_job(tmp_path, write=False), on_event=_recorder([]))


def test_a_file_from_another_spec_version_is_refused_unless_the_caller_vouches_for_its_hash(tmp_path):
    job = _job(tmp_path)
    unvouched = TrainJob(**{**vars(job), "expected_hash": None})
    with pytest.raises(FeatureHashMismatch, match="feature spec version 'synthetic-1'"):
        run_job(unvouched, on_event=_recorder([]))


def test_the_cuda_graph_setting_records_only_on_cuda_outside_fp16_and_learns_the_same_elsewhere(tmp_path):
    from training.errors import BadTrainingConfig
    from training.families.lstm.graphed import graph_wanted

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert graph_wanted("auto", cuda, "bf16") and graph_wanted("auto", cuda, "fp32")
    assert not graph_wanted("auto", cuda, "fp16")  # the loss scaler decides on the host
    assert not graph_wanted("auto", cpu, "fp32") and not graph_wanted("off", cuda, "bf16")
    with pytest.raises(BadTrainingConfig, match="cuda_graph='on' must be off or auto"):
        TINY.with_overrides({"cuda_graph": "on"})
    logs = []
    for choice in ("off", "auto"):
        job = _job(tmp_path / choice, config=TINY.with_overrides({"cuda_graph": choice}))
        folder = run_job(job, on_event=lambda event, **fields: None).folder
        logs.append([(e["loss"], e["val_loss"]) for e in json.loads((folder / "training_log.json").read_text())])
    assert logs[0] == logs[1]  # on the CPU, "auto" is the eager step, bit for bit
