"""The ``sync``, ``upload`` and ``download`` checklist steps.

``sync`` readies the run's host (`console.transfer.ready_host`: code and features by delta,
a check that it can train, the run's lease). ``upload`` collects what the training jobs
produced into the artifact store as a new version, through the run's training backend
(the ``ssh`` backend fetches the host's artifact root; the store moves
``models/latest.json`` last). ``download`` takes that version (or latest), checks every
sha256, and places it in the models directory.

Before it uploads, ``upload`` removes the partial versions an earlier, killed attempt of the
same run left in the store (files but no manifest; event ``artifacts.partial_removed``).

``sync`` ends SKIPPED when the run's backend manages its own instances (there is no host of
ours to sync to); ``upload`` collects from any backend.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from console.checklist.step import Step, StepContext, StepResult, register
from console.errors import StepFailed
from console.hosts import RunHosts
from console.outputs import DownloadOutputs, LaunchOutputs, SyncOutputs, TrainOutputs, UploadOutputs
from console.steps.cloud import not_needed_by_backend
from console.steps.params import DownloadParams, SyncParams, UploadParams
from console.transfer import champion_rules, place_version, ready_host
from remote.backends.base import JobRef
from remote.errors import HostUnreachable

SYNC_RECONNECTS = 3
"""Reconnects the sync step makes inside one attempt when the SSH link drops."""


@register
class Sync(Step):
    """Send code and features to the host, check it can train, and lease it for this run."""

    name = "sync"
    Params = SyncParams
    Outputs = SyncOutputs

    def plan(self, ctx: StepContext) -> str:
        return (
            f"send the training code and {len(ctx.params.symbols)} feature files to the instance "
            f"(changed files only), check its Python and GPU, and write the run's lease there"
        )

    def run(self, ctx: StepContext) -> StepResult:
        skipped = not_needed_by_backend(ctx, "sync")
        if skipped is not None:
            return skipped
        launched = ctx.output_of("launch", LaunchOutputs)
        if launched is None:
            raise StepFailed("no SSH coordinates for the instance", hint="run the launch step first")
        for reconnect in range(SYNC_RECONNECTS + 1):
            try:
                with ctx.resources.runner(launched) as runner:
                    done = ready_host(
                        ctx.resources,
                        runner,
                        launched,
                        run_id=ctx.run_id,
                        symbols=list(ctx.params.symbols),
                        log=ctx.log,
                        cancelled=ctx.cancelled,
                    )
                break
            except HostUnreachable as exc:  # ConnectionLost too: a link that dropped, or could not come up
                # A dropped link is not a failed sync: reconnect here and send what is still
                # missing (only changed files travel), instead of failing into the engine's retry.
                if reconnect == SYNC_RECONNECTS:
                    raise
                wait = min(2.0**reconnect, 8.0)
                ctx.log.warning("SSH dropped during sync (%s); reconnecting in %.0fs (%d/%d)",
                                exc, wait, reconnect + 1, SYNC_RECONNECTS)  # fmt: skip
                if ctx.cancelled.wait(wait):
                    ctx.check_cancelled()
        details = {**done.details, "reconnects": reconnect}
        summary = done.summary + (f"; SSH dropped; reconnected {reconnect}x" if reconnect else "")
        return StepResult.ok(summary, details=details, outputs=done.outputs)


def _remove_partial_uploads(ctx: StepContext) -> None:
    """Delete what an earlier attempt of this run, killed mid-upload, left in the store: its
    versions with files but no manifest (never a complete version, never another run's). This
    console holds the run's lock, so no upload of this run is still going."""
    if not ctx.resources.has_artifact_store:
        return
    store = ctx.resources.artifact_store()
    removed = store.remove_partial_versions(ctx.run_id)
    for version in removed:
        ctx.log.info("removed the partial version %s a killed upload left in %s", version, store.describe())
        ctx.emit(
            "artifacts.partial_removed",
            f"removed partial version {version} (an earlier upload of this run was killed)",
            version=version,
            store=store.describe(),
        )


@register
class Upload(Step):
    """Bring the trained artifacts into the store as a new version, through the training backend."""

    name = "upload"
    Params = UploadParams
    Outputs = UploadOutputs

    def plan(self, ctx: StepContext) -> str:
        return (
            f"collect the trained artifacts through the {ctx.params.backend} backend and upload them with "
            "sha256 and tags as a new version; move models/latest.json to it"
        )

    def run(self, ctx: StepContext) -> StepResult:
        trained = ctx.output_of("train", TrainOutputs)
        refs = [JobRef.from_dict(job) for job in trained.jobs] if trained else []
        if not refs:
            # No train step output (trained by hand, or an older run): the run's host holds the artifacts.
            refs = [JobRef(ctx.params.backend, f"train-{ctx.run_id}", f"train-{ctx.run_id}", ctx.run_id)]
        backend = ctx.resources.backend(
            ctx.params.backend, run_id=ctx.run_id, hosts=RunHosts(ctx), log=ctx.log, should_stop=ctx.cancelled.is_set
        )
        _remove_partial_uploads(ctx)
        last = None
        for n, ref in enumerate(refs):
            staging = Path(ctx.run_dir) / f"artifacts-{ctx.attempt}-{n}"
            if staging.exists():
                shutil.rmtree(staging)
            last = backend.collect(ref, staging)
            ctx.emit(
                "artifacts.uploaded",
                f"version {last.version}",
                version=last.version,
                files=last.files,
                bytes=last.bytes,
            )
        assert last is not None
        return StepResult.ok(
            f"uploaded {last.files} files ({last.bytes / (1 << 20):.1f} MiB) as version {last.version} to "
            f"{last.where}; latest points at it",
            outputs=UploadOutputs(version=last.version, store=last.where, files=last.files),
        )


@register
class Download(Step):
    """Fetch the run's version (or latest) from the store, verified, into the models directory."""

    name = "download"
    Params = DownloadParams
    Outputs = DownloadOutputs

    def plan(self, ctx: StepContext) -> str:
        return "download the uploaded version (sha256 checked) into the local models directory"

    def run(self, ctx: StepContext) -> StepResult:
        uploaded = ctx.output_of("upload", UploadOutputs)
        version = uploaded.version if uploaded is not None else "latest"
        paths = ctx.resources.paths
        placed = place_version(ctx.resources.artifact_store(), version, paths.models, paths.downloads,
                               **champion_rules(ctx.resources))  # fmt: skip
        return StepResult.ok(
            f"downloaded version {placed.version} ({placed.files} files) into {paths.models}", outputs=placed
        )
