"""What each retrain step hands to the steps after it: one pydantic model per step.

A step returns its outputs as one of these (`console.checklist.step.StepResult.outputs`);
the engine stores them as JSON and a later step reads them back typed with
``ctx.output_of("launch", LaunchOutputs)``. Commands, the watchdog and the TUI read them
the same way. Stored outputs written by an older console may carry keys these models no
longer name: they are ignored, never an error.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StepOutputs(BaseModel):
    """Base of every step's outputs: frozen, JSON-able, unknown stored keys ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class NoOutputs(StepOutputs):
    """For steps that hand nothing on."""


class HostCoordinates(StepOutputs):
    """How to reach a host over SSH and how its host key is trusted."""

    instance_id: str
    host: str
    port: int = 22
    user: str = "ubuntu"
    key_path: str
    """The private key the console generated (or the config names); never the operator's ~/.ssh."""
    provider: str = "ec2"
    host_key_publication: str | None = None
    """Trusted text listing the host's keys, for the first connection (the sandbox's endpoints
    file, a static host's configured key); None means ask a provider that publishes them."""
    host_key: str | None = None
    """The host's SSH key line (``ssh-ed25519 AAAA...``) when the console learned it at launch (the sandbox)."""
    public_address: str | None = None
    """The address the provider gave it (when ``host`` is a local stand-in, as on the sandbox)."""
    remote_root: str | None = None
    """Where the run's things live on the host (`console.transfer.RemoteLayout`); None: ``rc``."""


class FetchOutputs(StepOutputs):
    candles: int = 0


class FeaturesOutputs(StepOutputs):
    feature_hashes: dict[str, str] = Field(default_factory=dict)


class LaunchOutputs(HostCoordinates):
    """The run's instance: its SSH coordinates, type and zone."""

    instance_type: str = ""
    zone: str = ""


class SyncOutputs(StepOutputs):
    """Where code, features and artifacts are on the host, and the lease the sync wrote."""

    remote_code_dir: str | None = None
    remote_features_dir: str | None = None
    remote_artifacts_dir: str | None = None
    lease_path: str | None = None
    lease_expires_at: str | None = None
    gpu: str | None = None
    host_kind: str | None = None
    """How the host proves who it is to the training guard: ``sandbox``, ``aws`` or ``static``."""
    host_key_fingerprint: str | None = None
    instance_id: str | None = None
    """The instance the lease was written for."""


class TrainOutputs(StepOutputs):
    """The training jobs the backend ran, as `remote.backends.base.JobRef` dicts."""

    backend: str = "ssh"
    jobs: list[dict[str, Any]] = Field(default_factory=list)
    relaunches: int = 0
    """Hosts replaced during training (the ssh backend's spot recovery)."""


class UploadOutputs(StepOutputs):
    version: str
    store: str = ""
    files: int = 0


class TerminateOutputs(StepOutputs):
    terminated: list[str] = Field(default_factory=list)


class DownloadOutputs(StepOutputs):
    version: str
    files: int = 0
    models_dir: str = ""


class CheckOutputs(StepOutputs):
    """What a check step spent fetching and building features (the checklist bench subtracts it)."""

    fetch_s: float = 0.0
    features_s: float = 0.0


class AlignmentOutputs(CheckOutputs):
    aligned: list[str] = Field(default_factory=list)


class DryrunOutputs(CheckOutputs):
    gate_id: str | None = None
    """The gate record's id (a uuid hex, `runtime_checks.gate`)."""
