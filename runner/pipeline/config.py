"""Reference pipeline settings as frozen data: latency models and faults.

Built from a document already validated against `schemas/pipeline.schema.json`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Literal

from runner import durations

FaultKind = Literal["fail", "fail_then_retry", "hang", "skip", "backwards", "duplicate", "stall_notify", "crash",
                    "duplicate_trigger"]


@dataclass(frozen=True, slots=True)
class Latency:
    """fixed(a), uniform(a, b) or lognormal(median=a, sigma=b), in seconds."""

    kind: Literal["fixed", "uniform", "lognormal"] = "fixed"
    a: float = 0.0
    b: float = 0.0

    def sample(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        return rng.lognormvariate(math.log(self.a), self.b) if self.a > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    step: str
    variants: tuple[int, ...] | None = None
    jobs: tuple[int, ...] | None = None
    probability: float = 1.0
    times: int = 1
    to: str | None = None

    def targets(self, step: str, creation_order: int, job_ordinal: int) -> bool:
        """Whether this fault's step, variant and job targets all match (probability aside)."""
        return (
            step == self.step
            and (self.variants is None or creation_order in self.variants)
            and (self.jobs is None or job_ordinal in self.jobs)
        )


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    seed: int = 0
    slots: int = 8
    with_ye: bool = False
    ye_poll: float = 0.2
    sweep: float = 5.0
    max_retries: int = 2
    retry_backoff: float = 0.0
    stop_after: str | None = None
    default_latency: Latency = Latency()
    latency: tuple[tuple[str, Latency], ...] = ()
    faults: tuple[Fault, ...] = ()

    def latency_for(self, step: str) -> Latency:
        return dict(self.latency).get(step, self.default_latency)


def build(doc: dict[str, Any] | None) -> PipelineConfig:
    """PipelineConfig from a schema-valid mapping; absent keys take the defaults."""
    doc = doc or {}
    latency = doc.get("latency", {})
    defaults = PipelineConfig()
    return PipelineConfig(
        seed=doc.get("seed", defaults.seed),
        slots=doc.get("slots", defaults.slots),
        with_ye=doc.get("with_ye", defaults.with_ye),
        ye_poll=durations.parse(doc["ye_poll"]) if "ye_poll" in doc else defaults.ye_poll,
        sweep=durations.parse(doc["sweep"]) if "sweep" in doc else defaults.sweep,
        max_retries=doc.get("max_retries", defaults.max_retries),
        retry_backoff=durations.parse(doc["retry_backoff"]) if "retry_backoff" in doc else defaults.retry_backoff,
        stop_after=doc.get("stop_after"),
        default_latency=_latency(latency.get("default", "0")),
        latency=tuple((step, _latency(spec)) for step, spec in latency.get("steps", {}).items()),
        faults=tuple(_fault(f) for f in doc.get("faults", ())),
    )


def _latency(spec: Any) -> Latency:
    if isinstance(spec, str):
        return Latency("fixed", durations.parse(spec))
    if "uniform" in spec:
        low, high = (durations.parse(v) for v in spec["uniform"])
        return Latency("uniform", min(low, high), max(low, high))
    params = spec["lognormal"]
    return Latency("lognormal", durations.parse(params["median"]), float(params.get("sigma", 0.5)))


def _fault(doc: dict[str, Any]) -> Fault:
    return Fault(
        kind=doc["kind"],
        step=doc["step"],
        variants=tuple(doc["variants"]) if "variants" in doc else None,
        jobs=tuple(doc["jobs"]) if "jobs" in doc else None,
        probability=float(doc.get("probability", 1.0)),
        times=int(doc.get("times", 1)),
        to=doc.get("to"),
    )
