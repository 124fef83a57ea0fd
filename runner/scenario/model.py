"""A scenario as typed, frozen data: defaults applied, durations in seconds.

Nothing downstream of the loader reads raw YAML dicts; it reads these. A test keeps the
defaults here in step with the `default`s of `schemas/scenario.schema.json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from runner.definition import DEFAULT, STEP_TIMEOUT, Definition, Scalar, SeedRow
from runner.outcomes import FailureKind
from runner.pipeline.config import PipelineConfig
from runner.sqlvalue import ValueTest

RowRefKind = Literal["none", "any", "id"]
ModeType = Literal["once", "wait_for_completion", "interval"]
CleanupPolicy = Literal["always", "on_success", "never"]

DEFAULT_IMAGE_NAMES: tuple[str, ...] = (
    "pipeline_test_image9.jpg",
    "pipeline_test_image1.png",
    "pipeline_test_image16.jpg",
    "pipeline_test_image10.jpg",
    "pipeline_test_image11.jpg",
)
"""The original tool's priority list; the files ship with ye-run under `pipeline_test/`."""
DEFAULT_AD_COPY = "Fresh from the oven every morning: a ye-run test ad"
"""The English ad copy a test job gets: a real job always has one (the text part writes it before the images)."""


@dataclass(frozen=True, slots=True)
class RowRef:
    """How a nullable foreign key (store_id, tone_style_id) is filled."""

    kind: RowRefKind = "none"
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str = "ye_pipeline_test_tenant"
    name: str = "YE pipeline test tenant"
    isolate: bool = False


@dataclass(frozen=True, slots=True)
class JobInputs:
    desc_kor: str = "YE 파트 테스트용 이미지"
    extra: tuple[tuple[str, Scalar], ...] = ()


@dataclass(frozen=True, slots=True)
class Mode:
    type: ModeType = "once"
    jobs: int | None = None
    duration: float | None = None
    interval: float = 60.0
    max_in_flight: int = 100

    @property
    def job_limit(self) -> int | None:
        """How many jobs to create; None means 'until the duration is up'."""
        if self.jobs is not None:
            return self.jobs
        return None if self.duration is not None else 1


@dataclass(frozen=True, slots=True)
class Simulation:
    """The runner writing img_gen itself. `enabled=False` waits for a real YE part."""

    enabled: bool = False
    delay: float = 0.0
    fail_variants: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class State:
    step: str
    status: str = "done"

    def __str__(self) -> str:
        return f"({self.step}, {self.status})"


@dataclass(frozen=True, slots=True)
class ExpectedFailure:
    step: str
    variants: tuple[int, ...] | None = None
    """creation_order values; None means every variant."""
    required: bool = True

    def covers(self, creation_order: int) -> bool:
        return self.variants is None or creation_order in self.variants


LATENCY_LEVELS = ("p50", "p95", "p99", "max")
"""The order statistics a latency limit may hold, in order (each at most the next)."""


@dataclass(frozen=True, slots=True)
class LatencyLimit:
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None

    def given(self) -> tuple[tuple[str, float], ...]:
        """The limits written, as (level, seconds), in LATENCY_LEVELS order."""
        return tuple((level, getattr(self, level)) for level in LATENCY_LEVELS if getattr(self, level) is not None)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a value was written (1-based line and column), for errors found after loading."""

    file: str
    line: int
    col: int


@dataclass(frozen=True)
class SourceMap:
    """Where every value of a scenario was written, by JSON path, so a check made after loading (against
    the database) can still point at `file:line:col`."""

    file: str = ""
    marks: dict[str, Origin] = field(default_factory=dict)

    def at(self, path: str) -> str:
        """`file:line:col: path`, at the value or its nearest written ancestor."""
        origin = self.origin(path)
        return f"{origin.file}:{origin.line}:{origin.col}: {path}"

    def origin(self, path: str) -> Origin:
        """Where the value at `path` was written, else its nearest written ancestor (a default is declared by it)."""
        probe = path
        while probe not in self.marks and len(probe) > 1:
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut] if cut > 0 else "$"
        return self.marks.get(probe, Origin(self.file, 1, 1))


@dataclass(frozen=True, slots=True)
class SqlCheck:
    name: str
    query: str
    rows: int | None = None
    """The number of rows expected, when the check counts rows rather than testing a value."""
    value: ValueTest | None = None
    """What the first column of the only row is held to (`equals`, `at_least`, ..., `matches`)."""
    origin: Origin | None = None
    """Where the query was written; None for checks built by hand."""

    @property
    def compare_value(self) -> bool:
        """True when the check tests a value (an `equals` of null included), not a row count."""
        return self.value is not None

    @property
    def equals(self) -> Scalar:
        """The value of an `equals` test (None for any other check)."""
        if self.value is None or self.value.test != "equals":
            return None
        return self.value.expected  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Retries:
    """Retries of one step, counted per variant (or on the job row for a job-level step)."""

    max: int = 0
    min: int = 0
    variants: tuple[int, ...] | None = None
    """creation_order of the variants `min` applies to; None: all. The maximum applies to every one."""

    def min_for(self, creation_order: int) -> int:
        return self.min if self.variants is None or creation_order in self.variants else 0


@dataclass(frozen=True, slots=True)
class Detection:
    """A failure the checker must report (expect.detect): its kind, and where, if given."""

    kind: FailureKind
    step: str | None = None
    variants: tuple[int, ...] | None = None

    def matches(self, kind: FailureKind, step: str | None, creation_order: int | None) -> bool:
        return (kind == self.kind and (self.step is None or step == self.step)
                and (self.variants is None or creation_order in self.variants))

    def __str__(self) -> str:
        where = f" at {self.step}" if self.step else ""
        who = f" for variant(s) {', '.join(f'#{v}' for v in self.variants)}" if self.variants else ""
        return f"{self.kind}{where}{who}"


@dataclass(frozen=True, slots=True)
class Expectations:
    steps: tuple[str, ...]
    """The steps every variant walks after the start state, in order."""
    final_variant: State
    final_job: State | None
    """None: derived per job (done at the last step, or failed where a declared failure hit)."""
    retries: tuple[tuple[str, Retries], ...] = ()
    failures: tuple[ExpectedFailure, ...] = ()
    latency: tuple[tuple[str, LatencyLimit], ...] = ()
    latency_default: LatencyLimit = field(default_factory=LatencyLimit)
    """`expect.latency.default`: the limits of every step measured, where its own entry does not replace them."""
    job_latency: LatencyLimit = field(default_factory=LatencyLimit)
    """`expect.job_latency`: limits on a job's end-to-end latency."""
    sql: tuple[SqlCheck, ...] = ()
    final_variant_given: bool = False
    job_steps: tuple[str, ...] = ()
    """The job-level steps the job row walks once every variant is done, in order (none: not judged)."""
    job_failures: tuple[ExpectedFailure, ...] = ()
    """Failures declared at job-level steps: the job row's, never a variant's."""
    detect: tuple[Detection, ...] = ()

    def latency_limits(self, step: str) -> tuple[tuple[str, float, str], ...]:
        """The limits `step` is held to, as (level, seconds, JSON path written): its own, else the default's."""
        own = dict(dict(self.latency).get(step, LatencyLimit()).given())
        default = dict(self.latency_default.given())
        return tuple((level, own[level], f"$.expect.latency.{step}.{level}") if level in own else
                     (level, default[level], f"$.expect.latency.default.{level}")
                     for level in LATENCY_LEVELS if level in own or level in default)

    def retries_at(self, step: str) -> int:
        """The most retries of `step` allowed."""
        found = dict(self.retries).get(step)
        return found.max if found is not None else 0

    def retries_min(self, step: str, creation_order: int) -> int:
        found = dict(self.retries).get(step)
        return found.min_for(creation_order) if found is not None else 0

    def detection_for(self, kind: FailureKind, step: str | None, creation_order: int | None) -> Detection | None:
        return next((d for d in self.detect if d.matches(kind, step, creation_order)), None)

    def failure_for(self, step: str, creation_order: int) -> ExpectedFailure | None:
        for failure in self.failures:
            if failure.step == step and failure.covers(creation_order):
                return failure
        return None


@dataclass(frozen=True, slots=True)
class Timeouts:
    """The scenario's time limits, in seconds; the schema's defaults are read from these (declared once)."""

    step: float = STEP_TIMEOUT
    steps: tuple[tuple[str, float], ...] = ()
    stall: float = 300.0
    job: float = 1800.0
    grace: float = 3.0
    """Once a job's verdict is decided (a failure no later write undoes), how long to gather what happens
    alongside before judging it."""
    bounds: tuple[tuple[str, float], ...] = ()
    """The pipeline definition's bound per step: the limit of a step when the scenario gives neither
    `timeouts.step` nor `timeouts.steps` for it."""

    def for_step(self, step: str) -> float:
        """The limit of one step: the scenario's own, else the definition's bound, else `step`."""
        own = dict(self.steps).get(step)
        return own if own is not None else dict(self.bounds).get(step, self.step)


@dataclass(frozen=True, slots=True)
class Fixture:
    table: str
    rows: tuple[tuple[tuple[str, Scalar], ...], ...]


@dataclass(frozen=True, slots=True)
class Scenario:
    path: Path
    name: str
    expect: Expectations
    description: str = ""
    tags: tuple[str, ...] = ()
    tenant: Tenant = field(default_factory=Tenant)
    store: RowRef = field(default_factory=RowRef)
    tone_style: RowRef = field(default_factory=RowRef)
    images: tuple[Path, ...] = ()
    """Candidate images, resolved; empty means the images shipped with ye-run."""
    job_inputs: JobInputs = field(default_factory=JobInputs)
    variants: int = 3
    start: str = "user_img_input"
    mode: Mode = field(default_factory=Mode)
    simulate_img_gen: Simulation = field(default_factory=Simulation)
    observe: bool = True
    cleanup: CleanupPolicy = "on_success"
    timeouts: Timeouts = field(default_factory=Timeouts)
    fixtures: tuple[Fixture, ...] = ()
    ad_copy: str = DEFAULT_AD_COPY
    """The job's English ad copy: `${scenario.ad_copy}` in seed rows and fixtures."""
    seed_rows: tuple[SeedRow, ...] = DEFAULT.seed_rows
    """The definition's seed rows with the scenario's overrides applied, less the ones it leaves out."""
    seed_rows_left_out: tuple[str, ...] = ()
    reference_pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    """Latency and faults for the built-in reference pipeline (embedded default only)."""
    definition: Definition = DEFAULT
    """The pipeline definition the scenario was validated against (`--pipeline-file`)."""
    source: SourceMap = field(default_factory=SourceMap)

    def at(self, path: str) -> str:
        """`file:line:col: path` for a JSON path of this scenario (for errors found after loading)."""
        return self.source.at(path) if self.source.marks else f"{self.path}: {path}"

    def origin(self, path: str) -> Origin:
        """Where this scenario wrote the value at `path` (a scenario built by hand: its file's first line)."""
        return self.source.origin(path) if self.source.marks else Origin(str(self.path), 1, 1)
