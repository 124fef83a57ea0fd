"""Whether a scenario means anything against this target, and if not, why it is not run.

A scenario that injects faults into the reference pipeline, stops it early, needs its YE part, or
seeds rows only its sweep finds, tests ye-run's reference pipeline: against a real deployment
nothing injects the fault (or announces the rows), so running it would give a misleading failure.
Such a scenario is not run there, with the reason, and the others run.
"""

from __future__ import annotations

from runner.scenario.model import Scenario


def reference_only(scenario: Scenario) -> str | None:
    """Why `scenario` needs ye-run's reference pipeline, or None when any pipeline can run it."""
    config = scenario.reference_pipeline
    if config.faults:
        kinds = ", ".join(sorted({fault.kind for fault in config.faults}))
        return f"it injects faults into the reference pipeline ({kinds}); run it with --reference-pipeline"
    if config.stop_after is not None:
        return f"it stops the reference pipeline after {config.stop_after}; run it with --reference-pipeline"
    if config.with_ye:
        return ("it needs the YE part to run img_gen, which the reference pipeline runs (with_ye); run it with "
                "--reference-pipeline")
    definition = scenario.definition
    if scenario.start != definition.seed and not scenario.simulate_img_gen.enabled:
        return (f"it seeds its variants at ({scenario.start}, done), and a notify trigger fires on UPDATE only: a "
                "real pipeline is never told of them (simulate_img_gen writes them as updates); the reference "
                "pipeline finds them on its sweep: run it with --reference-pipeline")
    return None


def not_run_here(scenario: Scenario, reference_pipeline: bool) -> str | None:
    """The reason `scenario` is not run against this target (before the database is asked), or None."""
    reason = reference_only(scenario) if not reference_pipeline else None
    return f"not run: {reason}" if reason else None
