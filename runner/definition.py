"""The pipeline as data: its steps, in order, on the variants and then on the job row.

Pipelines change (a step is added, one is renamed, a retry rule moves); the team that owns
the pipeline owns this definition, so a scenario can say so without a new ye-run. The built-in
default mirrors the deployment: ten variant steps, then `ad_copy_gen_kor` and
`instagram_feed_gen` on the jobs row once every variant is `(iou_eval, done)`, and each job seeded
with the English ad copy the deployment's text part writes before the images.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

Level = Literal["variant", "job"]
JobRow = Literal["each_step", "together"]
Scalar = str | int | float | bool | None
TERMINAL = frozenset({"done", "failed"})
STEP_TIMEOUT = 300.0
"""A step's upper bound when its definition gives none (the scenario's `timeouts.step` default)."""


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    level: Level = "variant"
    writes: tuple[str, ...] = ("running", "done")
    """The statuses a normal run of the step writes, in order (some stages write only `done`)."""
    retry_to: tuple[str, str] | None = None
    """Where a failed step goes when it is retried; None: `(step, queued)`."""
    simulated: bool = False
    """The YE part's step, which `simulate_img_gen` writes."""
    timeout: float = STEP_TIMEOUT
    """The longest one run of the step takes, in seconds: a scenario's default step limit, and how long the pipeline
    may still be at work on a row (a stage that writes only `done` is silent while it works)."""


@dataclass(frozen=True, slots=True)
class SeedRow:
    """A row every job needs beyond the core ones (the deployment's English ad copy), seeded with the job; values
    may hold the fixture placeholders (`${job.id}`, `${scenario.ad_copy}`, ...)."""

    name: str
    table: str
    values: tuple[tuple[str, Scalar], ...]
    at: str = ""
    """Where the row was declared (`file:line:col: json.path`), for refusals found against the database."""
    origins: tuple[tuple[str, str], ...] = ()
    """Where each value was written, by column; a column not listed was written where the row was."""

    def where(self, column: str | None = None) -> str:
        """Where a value (or, without a column, the row) was written."""
        return dict(self.origins).get(column, f"{self.at}.values.{column}") if column else self.at


@dataclass(frozen=True)
class Definition:
    variant_steps: tuple[Step, ...]
    """In order; the first is the seeded state (never run)."""
    job_steps: tuple[Step, ...] = ()
    """Run on the jobs row, in order, once every variant is done at the last variant step."""
    seed_states: tuple[str, ...] = ()
    """States a scenario may seed (with status done); the first is the default."""
    seed_rows: tuple[SeedRow, ...] = ()
    """Rows seeded with every job after the core ones, where the database has their table."""
    statuses: tuple[str, ...] = ("queued", "running", "done", "failed")
    job_row: JobRow = "together"
    """How the jobs row follows its variants: `each_step` moves it to (S, done) whenever every variant is
    (S, done) and to (S, failed) when one fails at S; `together` moves it only when every variant is done at
    the same step at the same moment, so it may skip steps, and after a failure leaves it failed at a step
    no later than the one that failed."""
    name: str = "built-in"
    source: str = "built-in"
    """The file it was read from, or `built-in`."""
    sha256: str = ""
    _steps: tuple[Step, ...] = field(init=False, compare=False, repr=False)
    _names: tuple[str, ...] = field(init=False, compare=False, repr=False)
    _index: dict[str, int] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        """Computed once: the trace checker looks steps up on every transition."""
        steps = self.variant_steps + self.job_steps
        object.__setattr__(self, "_steps", steps)
        object.__setattr__(self, "_names", tuple(s.name for s in steps))
        object.__setattr__(self, "_index", {s.name: i for i, s in enumerate(steps)})

    # --- the steps ----------------------------------------------------------------------

    @property
    def steps(self) -> tuple[Step, ...]:
        return self._steps

    @property
    def names(self) -> tuple[str, ...]:
        """Every step name, variant steps first: the order a job's work follows."""
        return self._names

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.variant_steps)

    @property
    def job_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.job_steps)

    @property
    def seed_row_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.seed_rows)

    @property
    def seed(self) -> str:
        return self.variant_steps[0].name

    @property
    def last_variant_step(self) -> str:
        return self.variant_steps[-1].name

    @property
    def simulated_step(self) -> str | None:
        return next((s.name for s in self.variant_steps if s.simulated), None)

    def step(self, name: str) -> Step:
        return self._steps[self._index[name]]

    def has(self, name: str) -> bool:
        return name in self._index

    def index(self, name: str) -> int:
        """Position in the whole pipeline; KeyError for an unknown step."""
        return self._index[name]

    def level(self, name: str) -> Level:
        return self.step(name).level

    def steps_after(self, name: str) -> tuple[str, ...]:
        return self._names[self.index(name) + 1:]

    def next_step(self, name: str) -> str | None:
        position = self.index(name) + 1
        return self._names[position] if position < len(self._names) else None

    def previous_step(self, name: str) -> str | None:
        position = self.index(name)
        return self._names[position - 1] if position > 0 else None

    def retry_target(self, name: str) -> tuple[str, str]:
        return self.step(name).retry_to or (name, "queued")

    def writes(self, name: str) -> tuple[str, ...]:
        return self.step(name).writes


def _variant(name: str, **extra: object) -> Step:
    return Step(name, "variant", **extra)  # type: ignore[arg-type]


def _job(name: str, **extra: object) -> Step:
    return Step(name, "job", **extra)  # type: ignore[arg-type]


DEFAULT_TEXT = """\
# The pipeline ye-run tests, as deployed (ye-run's built-in default).
name: deployment
variant_steps:
  - user_img_input
  - {name: img_gen, simulated: true}
  - vlm_analyze
  - yolo_detect
  - planner
  - {name: overlay, retry_to: {step: planner, status: done}}
  - vlm_judge
  - ocr_eval
  - readability_eval
  - iou_eval
job_steps:
  - {name: ad_copy_gen_kor, writes: [done]}
  - {name: instagram_feed_gen, writes: [done]}
seed_states: [user_img_input, img_gen]
seed_rows:
  - name: english_ad_copy
    table: txt_ad_copy_generations
    values: {job_id: "${job.id}", generation_stage: ad_copy_eng, ad_copy_eng: "${scenario.ad_copy}", status: done}
job_row: together
"""
"""The built-in default as a file would say it (`ye-run definition` prints it; a test keeps both in step)."""

DEFAULT = Definition(
    variant_steps=(
        _variant("user_img_input"), _variant("img_gen", simulated=True), _variant("vlm_analyze"),
        _variant("yolo_detect"), _variant("planner"), _variant("overlay", retry_to=("planner", "done")),
        _variant("vlm_judge"), _variant("ocr_eval"), _variant("readability_eval"), _variant("iou_eval"),
    ),
    job_steps=(_job("ad_copy_gen_kor", writes=("done",)), _job("instagram_feed_gen", writes=("done",))),
    seed_states=("user_img_input", "img_gen"),
    seed_rows=(SeedRow("english_ad_copy", "txt_ad_copy_generations",
                       (("job_id", "${job.id}"), ("generation_stage", "ad_copy_eng"),
                        ("ad_copy_eng", "${scenario.ad_copy}"), ("status", "done")),
                       at="built-in definition: $.seed_rows[0]"),),
    name="deployment",
    sha256=hashlib.sha256(DEFAULT_TEXT.encode()).hexdigest(),
)
