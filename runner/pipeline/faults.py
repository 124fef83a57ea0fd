"""Deciding which injected fault, if any, applies to one execution of a step.

Draws are reproducible: each comes from a generator seeded by (seed, job ordinal, variant,
step, attempt), so the outcome does not depend on which thread ran first.
"""

from __future__ import annotations

import random
import zlib

from runner.pipeline.config import Fault, PipelineConfig
from runner.pipeline.scope import VariantInfo


def rng(config: PipelineConfig, info: VariantInfo, step: str, attempt: int, purpose: str) -> random.Random:
    key = f"{config.seed}:{info.job_ordinal}:{info.creation_order}:{step}:{attempt}:{purpose}"
    return random.Random(zlib.crc32(key.encode()))


def find(config: PipelineConfig, kind: str, info: VariantInfo, step: str, attempt: int = 0) -> Fault | None:
    """The first fault of `kind` whose targets match and whose probability draw succeeds."""
    for index, fault in enumerate(config.faults):
        if fault.kind != kind or not fault.targets(step, info.creation_order, info.job_ordinal):
            continue
        if fault.probability >= 1 or rng(config, info, step, attempt, f"fault{index}").random() < fault.probability:
            return fault
    return None


def latency(config: PipelineConfig, info: VariantInfo, step: str, attempt: int) -> float:
    return max(0.0, config.latency_for(step).sample(rng(config, info, step, attempt, "latency")))
