"""The pipeline's step model: the steps in order, the statuses, and what may follow what."""

from __future__ import annotations

from typing import Final

PIPELINE: Final[tuple[str, ...]] = (
    "user_img_input",
    "img_gen",
    "vlm_analyze",
    "yolo_detect",
    "planner",
    "overlay",
    "vlm_judge",
    "ocr_eval",
    "readability_eval",
    "iou_eval",
)
"""Every step a variant walks, in order. The first is what a test seeds."""

START_STEPS: Final[tuple[str, ...]] = ("user_img_input", "img_gen")
"""Legal seed states, always with status `done`: a YE test, or a YH-only test."""

YE_STEPS: Final[tuple[str, ...]] = ("img_gen",)
YH_STEPS: Final[tuple[str, ...]] = PIPELINE[2:]

STATUSES: Final[tuple[str, ...]] = ("queued", "running", "done", "failed")
TERMINAL_STATUSES: Final[frozenset[str]] = frozenset({"done", "failed"})

RETRY_TARGET: Final[dict[str, tuple[str, str]]] = {"overlay": ("planner", "done")}
"""Steps whose retry does not go to `(step, queued)` but back to an earlier state."""


def index(step: str) -> int:
    """Position of a step in the pipeline; raises ValueError for an unknown step."""
    return PIPELINE.index(step)


def steps_after(step: str) -> tuple[str, ...]:
    """The steps that follow `step`, in order."""
    return PIPELINE[index(step) + 1 :]


def next_step(step: str) -> str | None:
    following = steps_after(step)
    return following[0] if following else None


def is_in_order(steps: list[str] | tuple[str, ...]) -> bool:
    positions = [index(s) for s in steps]
    return all(a < b for a, b in zip(positions, positions[1:]))
