"""How a run behaves, beyond what its scenario says: the session's options, the same for every scenario."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import platformdirs

from runner.db import requirements


@dataclass(frozen=True)
class RunSettings:
    observe: Literal["auto", "history", "listen"] = "auto"
    variant_channel: str = requirements.VARIANT_CHANNEL
    job_channel: str = requirements.JOB_CHANNEL
    tenant_pattern: str | None = None
    force: bool = False
    asset_dir: Path = field(default_factory=lambda: platformdirs.user_cache_path("ye-run") / "assets")
    asset_base_url: str | None = None
    reference_pipeline: bool = False
    """Run the built-in reference pipeline in-process (the embedded default)."""
    job_settle: float = 5.0
    """How long the job row may lag behind its last variant before its state counts as wrong."""
    heartbeat: float = 5.0
    reconcile: float = 2.0
    reconnect_window: float = 30.0
    """How long the run waits for a lost database to come back before it ends with an error."""
    cleanup_wait: float = 30.0
    """The longest cleanup waits for a pipeline to finish with the jobs; past it the rows are kept."""
    worker: str = ""
    """The session worker running the scenario (reports name it)."""
