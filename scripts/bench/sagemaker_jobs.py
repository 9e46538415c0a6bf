"""Time SageMaker training jobs on the sandbox: submit -> start -> first epoch on the
operator's screen, and a managed-spot interruption's cost in epochs.

    .venv/bin/python scripts/bench/sagemaker_jobs.py [--jobs 3] [--epochs 4] [--interrupt-at 2]

Starts a sandbox in a fresh state directory, makes a bucket and an execution role in its
moto, writes a small synthetic feature file, and for each job submits it through the
``sagemaker`` backend and follows it (DescribeTrainingJob and the CloudWatch log stream,
every half second), recording:

- ``start_to_first_epoch_s``: the job's Training transition -> the first epoch event in
  the follower's hands (the operator's screen); target <= 5 s (issue 13);
- ``written_to_seen_s``: the epoch line's log timestamp -> the follower has it (polling delay);
- ``submit_to_start_s``: CreateTrainingJob -> Training (tree made, channels downloaded).

Then one job is interrupted (managed spot) when epoch ``--interrupt-at`` arrives, and the
bench checks that every epoch was trained once and the model's history has them all
(target: at most the epoch in progress lost; same artifacts as uninterrupted).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

UNIT = "BTC-USD"
TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                 "Principal": {"Service": "sagemaker.amazonaws.com"}}]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--interrupt-at", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    from remote.backends import backend_class
    from remote.backends.base import BackendContext, JobEvent, JobPhase, JobSpec
    from remote.providers.aws_client import make_client
    from remote.sandbox.lifecycle import down, ensure_up
    from remote.storage import LocalArtifactStore
    from training.families.lstm.synthetic import write_synthetic_feature_file
    from training.features.spec import SPEC_VERSION, spec_for

    work = Path(tempfile.mkdtemp(prefix="rc-bench-sagemaker-"))
    sandbox = ensure_up(work / "state")
    try:
        target = sandbox.aws_target()
        make_client("s3", target).create_bucket(Bucket="rc-bench")
        role = make_client("iam", target).create_role(RoleName="rc-bench", AssumeRolePolicyDocument=json.dumps(TRUST))
        write_synthetic_feature_file(work / "features", UNIT, 9000, 3, stored_hash=spec_for(UNIT).hash,
                                     spec_version=SPEC_VERSION)  # fmt: skip
        store = LocalArtifactStore(work / "store")
        options = {"role_arn": role["Role"]["Arn"], "bucket": "rc-bench", "features_dir": str(work / "features")}
        train = {"epochs": args.epochs, "window": 8, "longest_feature_window": 10, "hidden_size": 8,
                 "num_layers": 1, "batch_size": 64, "device": "cpu", "patience": 1000, "sample_stride": 5}  # fmt: skip

        def run(name: str, interrupt_at: int | None) -> dict[str, Any]:
            backend = backend_class("sagemaker")(BackendContext(run_id="bench", store=store, aws=lambda: target,
                                                                work_dir=work / "work", options=options))  # fmt: skip
            spec = JobSpec(run_id="bench", name=name, family="lstm", units=(UNIT,),
                           params={"train": train, "gates": {"min_trades": 5}})  # fmt: skip
            submitted = time.time()
            ref = backend.submit(spec)
            seen: list[tuple[float, JobEvent]] = []

            def on_event(event: JobEvent) -> None:
                seen.append((time.time(), event))
                if interrupt_at and event.kind == "epoch" and event.data["epoch"] == interrupt_at:
                    request = urllib.request.Request(f"{sandbox.moto_url}/_sandbox/sagemaker/interrupt",
                                                     json.dumps({"job_name": name}).encode(), method="POST")
                    urllib.request.urlopen(request, timeout=10).read()

            status = backend.follow(ref, on_event, should_stop=lambda: False)
            if status.phase is not JobPhase.SUCCEEDED:
                return {"job": name, "phase": status.phase.value, "reason": status.reason,
                        "log": [e.message for _, e in seen if e.kind == "log"][-8:]}  # fmt: skip
            described = backend.describe(name)
            training = next(t for t in described["SecondaryStatusTransitions"] if t["Status"] == "Training")
            started = training["StartTime"].timestamp()
            epochs = [(at, e) for at, e in seen if e.kind == "epoch"]
            logs = make_client("logs", target)
            stream = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                               logStreamNamePrefix=f"{name}/")["logStreams"][0]["logStreamName"]
            written = [e["timestamp"] / 1000 for e in logs.get_log_events(
                logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream, startFromHead=True)["events"]
                if e["message"].startswith('{"event": "epoch"')]  # fmt: skip
            figures = {
                "job": name,
                "phase": status.phase.value,
                "submit_to_start_s": round(started - submitted, 3),
                "start_to_first_epoch_s": round(epochs[0][0] - started, 3) if epochs else None,
                "written_to_seen_s": round(epochs[0][0] - written[0], 3) if epochs and written else None,
                "epochs_seen": [e.data["epoch"] for _, e in epochs],
                "training_s": status.training_s,
                "billable_s": status.billable_s,
            }
            if status.phase is JobPhase.SUCCEEDED:
                collected = backend.collect(ref, work / "collected" / name)
                local = store.download_version(collected.version, work / "verified" / name)
                history = json.loads(next(local.rglob("training_log.json")).read_text())
                figures["model_epochs"] = [row["epoch"] for row in history]
            return figures

        plain = [run(f"bench-{i}", None) for i in range(args.jobs)]
        interrupted = run("bench-spot", args.interrupt_at)
    finally:
        down(work / "state")
    failed = [f for f in [*plain, interrupted] if f["phase"] != "succeeded"]
    if failed:
        print(json.dumps(failed, indent=2))
        return 1
    firsts = [f["start_to_first_epoch_s"] for f in plain if f["start_to_first_epoch_s"] is not None]
    lags = [f["written_to_seen_s"] for f in plain if f["written_to_seen_s"] is not None]
    wanted = list(range(1, args.epochs + 1))
    result = {
        "jobs": plain,
        "interrupted": interrupted,
        "start_to_first_epoch_s": {"min": min(firsts), "median": statistics.median(firsts), "max": max(firsts)},
        "written_to_seen_s": {"median": statistics.median(lags), "max": max(lags)},
        "interruption_lost_epochs": len(wanted) - len(set(interrupted["epochs_seen"]) & set(wanted)),
        "interruption_same_epochs": interrupted.get("model_epochs") == wanted,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    ok = result["start_to_first_epoch_s"]["max"] <= 5.0 and result["interruption_same_epochs"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
