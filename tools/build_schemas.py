"""Writes schemas/*.json from the readable definitions below (run after editing them).

The JSON files are what ships and what editors read; this script keeps them consistent
(every property described, durations and steps defined once). A test fails if the
committed files drift from what this script produces.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner import definition, durations, sqlvalue  # noqa: E402
from runner.definition import DEFAULT  # noqa: E402
from runner.outcomes import FailureKind, Outcome  # noqa: E402
from runner.scenario import model  # noqa: E402
from runner.scenario.model import DEFAULT_AD_COPY  # noqa: E402

DURATION = {"type": "string", "pattern": durations.PATTERN}
STEP = {"enum": list(DEFAULT.names)}
"""The built-in definition's steps; `ye-run schema --pipeline-file FILE` prints a file's instead."""
STATUS = {"enum": list(DEFAULT.statuses)}
IDENT = "^[a-z_][a-z0-9_]{0,62}$"
TIMEOUTS = model.Timeouts()
"""The model declares the timeouts' defaults; the schema shows them (`durations.spell`)."""
DEFAULT_IMAGES = [
    "pipeline_test/pipeline_test_image9.jpg",
    "pipeline_test/pipeline_test_image1.png",
    "pipeline_test/pipeline_test_image16.jpg",
    "pipeline_test/pipeline_test_image10.jpg",
    "pipeline_test/pipeline_test_image11.jpg",
]


def obj(description, properties, required=(), default=None, **extra):
    schema = {"type": "object", "description": description, "additionalProperties": False,
              "properties": properties}
    if required:
        schema["required"] = list(required)
    if default is not None:
        schema["default"] = default
    schema.update(extra)
    return schema


def prop(description, schema, default=None):
    out = {"description": description, **schema}
    if default is not None:
        out["default"] = default
    return out


LATENCY_LIMITS = obj("Limits for one step.", {
    "p50": prop("Median limit.", {"$ref": "#/$defs/duration"}),
    "p95": prop("95th percentile limit.", {"$ref": "#/$defs/duration"}),
    "p99": prop("99th percentile limit.", {"$ref": "#/$defs/duration"}),
    "max": prop("Maximum.", {"$ref": "#/$defs/duration"}),
})
PERCENT = sqlvalue.PERCENT.pattern
DETECTABLE = [kind.value for kind in FailureKind if kind.detectable]
"""The checker's failure kinds a scenario may declare in expect.detect (declared once: `outcomes.FailureKind`)."""
KINDS = [kind.value for kind in FailureKind]
OUTCOMES = [outcome.value for outcome in Outcome]

STATE = obj("A (current_step, status) pair.", {
    "step": prop("The `current_step` value.", {"$ref": "#/$defs/step"}),
    "status": prop("The `status` value.", {"$ref": "#/$defs/status"}, "done"),
}, required=["step"])

ROW_REF = {
    "anyOf": [
        {"enum": ["none", "any"]},
        obj("An exact existing row.", {"id": prop("The row's primary key.", {"type": "string", "minLength": 1})},
            required=["id"]),
    ]
}

SCENARIO = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "ye-run scenario",
    "description": "One test of the ad-image pipeline: what to seed, how to drive it, what to expect.",
    "type": "object",
    "additionalProperties": False,
    "$defs": {
        "duration": prop("A duration: a number and a unit (ms, s, m, h), e.g. 250ms, 30s, 5m, 1h; or 0.", DURATION),
        "step": prop("A pipeline step.", STEP),
        "status": prop("A step status.", STATUS),
        "state": STATE,
        "scalar": {"description": "A column value.", "type": ["string", "number", "boolean", "null"]},
    },
    "properties": {
        "$schema": prop("The schema this file follows (for editors); ignored by ye-run.", {"type": "string"}),
        "name": prop("The scenario's name in reports. Default: the file name without extension.",
                     {"type": "string", "minLength": 1, "maxLength": 200}),
        "description": prop("What the scenario proves, for people reading reports.", {"type": "string"}, ""),
        "tags": prop("Labels for selecting scenarios (lowercase words).",
                     {"type": "array", "uniqueItems": True,
                      "items": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"}}, []),
        "matrix": prop("Top-level keys mapped to lists of values: the scenario runs once per combination, "
                       "each instance named `name[key=value,...]`.",
                       {"type": "object", "minProperties": 1,
                        "additionalProperties": {"type": "array", "minItems": 1}}),
        "extends": prop("Another scenario file (relative to this one) whose keys this file overrides; "
                        "mappings merge key by key, lists and values replace.", {"type": "string", "minLength": 1}),
        "pipeline_file": prop("The pipeline definition this scenario is written for (a file, relative to the file "
                              "that names it): its steps are the ones this scenario may name. Default: its folder's "
                              "in the project config, else the run's (--pipeline-file), else the built-in one.",
                              {"type": "string", "minLength": 1}),
        "tenant": obj("The tenant the job is seeded for.", {
            "id": prop("The tenant_id. Must look like test data (see the tenant guard).",
                       {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,62}$"},
                       "ye_pipeline_test_tenant"),
            "name": prop("Display name, used when the tenant row is created.", {"type": "string"},
                         "YE pipeline test tenant"),
            "isolate": prop("Append the run id to the tenant id, so parallel runs never share rows.",
                            {"type": "boolean"}, False),
        }, default={}),
        "store": prop("jobs.store_id: `none` (NULL), `any` (any existing row, NULL if there is none: the "
                      "original tool's behaviour), or `{id: ...}` (that row, which must exist).", ROW_REF, "none"),
        "tone_style": prop("job_inputs.tone_style_id: `none`, `any` or `{id: ...}`, as for store.", ROW_REF, "none"),
        "images": prop("Candidate image files, relative to the scenario file; the first that exists is used "
                       "and every variant shares its one image asset. Default: the images shipped with ye-run.",
                       {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                       DEFAULT_IMAGES),
        "ad_copy": prop("The job's English ad copy, as the deployment's text part writes it before the images: "
                        "`${scenario.ad_copy}` in seed rows and fixtures (the built-in definition seeds it into "
                        "txt_ad_copy_generations).", {"type": "string", "minLength": 1, "maxLength": 2000},
                        DEFAULT_AD_COPY),
        "seed_rows": prop("The pipeline definition's seed rows (rows a real job has beyond the core ones), by "
                          "name: `false` leaves one out (to test a job without it), `true` seeds it as defined, "
                          "`{values: ...}` overrides some of its values.", {
            "type": "object", "propertyNames": {"pattern": IDENT},
            "additionalProperties": {"anyOf": [
                {"type": "boolean"},
                obj("An override of a seed row.", {
                    "values": prop("Column -> value, over the definition's; placeholders as in fixtures.",
                                   {"type": "object", "minProperties": 1, "propertyNames": {"pattern": IDENT},
                                    "additionalProperties": {"$ref": "#/$defs/scalar"}}),
                }, required=["values"]),
            ]}}, {}),
        "job_inputs": obj("The job_inputs row.", {
            "desc_kor": prop("The Korean description of the product photo.", {"type": "string"},
                             "YE 파트 테스트용 이미지"),
            "extra": prop("Further job_inputs columns and their values (checked against the database).",
                          {"type": "object", "propertyNames": {"pattern": IDENT},
                           "additionalProperties": {"$ref": "#/$defs/scalar"}}, {}),
        }, default={}),
        "variants": prop("How many jobs_variants rows each job gets (creation_order 1..N).",
                         {"type": "integer", "minimum": 1, "maximum": 100}, 3),
        "start": prop("The state the variants are seeded in (status `done`): `user_img_input` for a YE "
                      "test, `img_gen` for a YH-only test.", {"enum": list(DEFAULT.seed_states)}, "user_img_input"),
        "mode": prop("How jobs are created: `once` (one job), `wait_for_completion` (the next when the "
                     "previous finished), `interval` (one every interval). A name, or a mapping with `type`.", {
            "anyOf": [
                {"enum": ["once", "wait_for_completion", "interval"]},
                obj("A mode with its settings.", {
                    "type": prop("The mode.", {"enum": ["once", "wait_for_completion", "interval"]}),
                    "jobs": prop("How many jobs to create (default 1 unless a duration is given).",
                                 {"type": "integer", "minimum": 1, "maximum": 100000}),
                    "duration": prop("Keep creating jobs for this long.", {"$ref": "#/$defs/duration"}),
                    "interval": prop("Time between job creations (interval mode).",
                                     {"$ref": "#/$defs/duration"}, "60s"),
                    "max_in_flight": prop("At most this many unfinished jobs at once (interval mode).",
                                          {"type": "integer", "minimum": 1, "maximum": 10000}, 100),
                }, required=["type"]),
            ]}, "once"),
        "simulate_img_gen": prop("Let the runner write img_gen itself (running, then done), as the original "
                                 "tool documented for testing the YH part alone: `true`, `false`, or a mapping.", {
            "anyOf": [
                {"type": "boolean"},
                obj("Simulation settings.", {
                    "delay": prop("Time between (img_gen, running) and (img_gen, done).",
                                  {"$ref": "#/$defs/duration"}, "0"),
                    "fail_variants": prop("creation_order of variants whose img_gen ends (img_gen, failed).",
                                          {"type": "array", "uniqueItems": True,
                                           "items": {"type": "integer", "minimum": 1}}, []),
                }),
            ]}, False),
        "observe": prop("Watch the variants and assert. `false` seeds and exits (the original `--once`).",
                        {"type": "boolean"}, True),
        "cleanup": prop("When to delete the rows the run created: `always`, `on_success` or `never`.",
                        {"enum": ["always", "on_success", "never"]}, "on_success"),
        "expect": obj("What the run must observe.", {
            "steps": prop("The steps expected, in pipeline order: variant steps every variant walks, then "
                          "job-level steps the job row walks. Default: every step after `start` (or up to "
                          "`stop_after`).", {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"}}),
            "stop_after": prop("The last step of a partial pipeline (a variant or a job-level step); nothing "
                               "after it is expected or judged.", {"$ref": "#/$defs/step"}),
            "final": obj("The final states. Default: the last expected step, done (failed at a declared "
                         "failure's step); for the job row, what the pipeline definition's job-row rule "
                         "guarantees.", {
                "variant": prop("Every variant's last state.", {"$ref": "#/$defs/state"}),
                "job": prop("The jobs row's last state.", {"$ref": "#/$defs/state"}),
            }, default={}),
            "retries": prop("Retries per step, counted per variant (on the job row for a job-level step): a "
                            "number is the most allowed (default 0 everywhere); `{min, max}` also requires at "
                            "least `min` (of the `variants` listed, default all).",
                            {"type": "object", "propertyNames": STEP, "additionalProperties": {"anyOf": [
                                {"type": "integer", "minimum": 0, "maximum": 10},
                                obj("A range of retries.", {
                                    "min": prop("At least this many retries.",
                                                {"type": "integer", "minimum": 0, "maximum": 10}, 0),
                                    "max": prop("At most this many (default: min).",
                                                {"type": "integer", "minimum": 0, "maximum": 10}),
                                    "variants": prop("creation_order of the variants `min` applies to (default: "
                                                     "all); the maximum applies to every variant.",
                                                     {"type": "array", "minItems": 1, "uniqueItems": True,
                                                      "items": {"type": "integer", "minimum": 1}}),
                                }, required=["min"]),
                            ]}}, {}),
            "detect": prop("Failures the checker must report: the scenario passes when exactly these are "
                           "detected in every job (a canary for the checker and the pipeline's guards), and "
                           "fails when one is missing or another appears.", {
                "type": "array",
                "items": obj("One expected detection.", {
                    "kind": prop("The failure kind (see the list in docs/scenario-format.md).",
                                 {"enum": DETECTABLE}),
                    "step": prop("The step it names (default: any).", {"$ref": "#/$defs/step"}),
                    "variants": prop("creation_order of the variants it names (default: any).",
                                     {"type": "array", "minItems": 1, "uniqueItems": True,
                                      "items": {"type": "integer", "minimum": 1}}),
                }, required=["kind"]),
            }, []),
            "failures": prop("Failures the scenario expects: these variants (or, at a job-level step, the "
                             "job row) end (step, failed).", {
                "type": "array",
                "items": obj("One expected failure.", {
                    "step": prop("The step that fails.", {"$ref": "#/$defs/step"}),
                    "variants": prop("creation_order of the variants that fail; `all` for every one.",
                                     {"anyOf": [{"const": "all"},
                                                {"type": "array", "minItems": 1, "uniqueItems": True,
                                                 "items": {"type": "integer", "minimum": 1}}]}, "all"),
                    "required": prop("`true`: the failure must happen. `false`: it may (a flaky step).",
                                     {"type": "boolean"}, True),
                }, required=["step"]),
            }, []),
            "latency": prop("Latency limits per step (from the previous step's done to this step's done); "
                            "`default` holds for every step measured, a step's own limits replace it key by key.", {
                "type": "object", "propertyNames": {"anyOf": [STEP, {"const": "default"}]},
                "additionalProperties": LATENCY_LIMITS,
            }, {}),
            "job_latency": obj("Limits on a job's end-to-end latency: from seeding to its last write (the job row's "
                               "final state), over every job that ran to its end.", LATENCY_LIMITS["properties"]),
            "sql": prop("Read-only SQL checks run after each job; `:job_id` and `:tenant_id` are bound.", {
                "type": "array",
                "items": obj("One check: exactly one of `rows` or a test of the value of the first column of "
                             "the only row (`equals`, `at_least`, `at_most`, `greater_than`, `less_than`, "
                             "`between`, `approx`, `matches`).", {
                    "name": prop("What the check proves.", {"type": "string", "minLength": 1}),
                    "query": prop("One plain read-only query (SELECT, VALUES or TABLE; read-only CTEs; no locking "
                                  "clause; immutable or stable functions only), checked by PostgreSQL's parser and "
                                  "catalog before anything is seeded.", {"type": "string", "minLength": 1}),
                    "equals": prop("The expected value of the first column of the single row.",
                                   {"$ref": "#/$defs/scalar"}),
                    "rows": prop("The expected number of rows.", {"type": "integer", "minimum": 0}),
                    "at_least": prop("The value is a number >= this.", {"type": "number"}),
                    "at_most": prop("The value is a number <= this.", {"type": "number"}),
                    "greater_than": prop("The value is a number > this.", {"type": "number"}),
                    "less_than": prop("The value is a number < this.", {"type": "number"}),
                    "between": prop("The value is a number from the first to the second, both included.",
                                    {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}),
                    "approx": obj("The value is a number within a tolerance of another.", {
                        "value": prop("The value expected.", {"type": "number"}),
                        "tolerance": prop("The largest difference allowed: a number, or a percentage of `value` "
                                          "(`5%`).", {"anyOf": [{"type": "number", "minimum": 0},
                                                                {"type": "string", "pattern": PERCENT}]}),
                    }, required=["value", "tolerance"]),
                    "matches": prop("A regular expression (Python syntax) found in the value's text.",
                                    {"type": "string", "minLength": 1, "maxLength": 1000}),
                }, required=["name", "query"]),
            }, []),
        }, default={}),
        "timeouts": obj("Time limits; a timeout is a failure and the run ends on time.", {
            "step": prop("Default limit per step (previous step's done to this step's done).",
                         {"$ref": "#/$defs/duration"}, durations.spell(TIMEOUTS.step)),
            "steps": prop("Per-step overrides.", {"type": "object", "propertyNames": STEP,
                                                  "additionalProperties": {"$ref": "#/$defs/duration"}}, {}),
            "stall": prop("Fail a variant that makes no transition for this long.", {"$ref": "#/$defs/duration"},
                          durations.spell(TIMEOUTS.stall)),
            "job": prop("Limit for one job, from seeding to its final state.", {"$ref": "#/$defs/duration"},
                        durations.spell(TIMEOUTS.job)),
            "grace": prop("Once a job has failed for certain (a rule broken, a timeout), how long to gather what "
                          "happens alongside before judging it; the rest of its run is not waited for.",
                          {"$ref": "#/$defs/duration"}, durations.spell(TIMEOUTS.grace)),
        }, default={}),
        "fixtures": prop("Extra rows seeded with each job (after the variants and the seed rows). Values may use "
                         "${job.id}, ${tenant.id}, ${image.id}, ${variant.N.id}, ${scenario.ad_copy}.", {
            "type": "array",
            "items": obj("Rows for one table.", {
                "table": prop("The table (checked against the database catalog).",
                              {"type": "string", "pattern": IDENT}),
                "rows": prop("The rows: column -> value.", {
                    "type": "array", "minItems": 1,
                    "items": {"type": "object", "minProperties": 1, "propertyNames": {"pattern": IDENT},
                              "additionalProperties": {"$ref": "#/$defs/scalar"}}}),
            }, required=["table", "rows"]),
        }, []),
        "reference_pipeline": prop("Settings for ye-run's built-in reference pipeline (latency, faults), "
                                   "used on the embedded default only; ignored against an external database.",
                                   {"$ref": "pipeline.schema.json"}, {}),
    },
}

LATENCY = {
    "anyOf": [
        {"$ref": "#/$defs/duration"},
        obj("Uniformly distributed between two durations.", {
            "uniform": prop("[low, high].", {"type": "array", "minItems": 2, "maxItems": 2,
                                             "items": {"$ref": "#/$defs/duration"}})}, required=["uniform"]),
        obj("Log-normally distributed.", {
            "lognormal": obj("Median and shape.", {
                "median": prop("The median.", {"$ref": "#/$defs/duration"}),
                "sigma": prop("The shape (standard deviation of the log).", {"type": "number", "minimum": 0,
                                                                              "maximum": 5}, 0.5),
            }, required=["median"])}, required=["lognormal"]),
    ]
}

FAULT_KINDS = ["fail", "fail_then_retry", "hang", "skip", "backwards", "duplicate", "stall_notify", "crash",
               "duplicate_trigger"]

PIPELINE = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "ye-run reference pipeline configuration",
    "description": "Latency and faults of the reference pipeline worker (`ye-run pipeline --config`).",
    "type": "object",
    "additionalProperties": False,
    "$defs": {
        "duration": prop("A duration: a number and a unit (ms, s, m, h), e.g. 250ms, 30s; or 0.", DURATION),
        "step": prop("A pipeline step.", STEP),
        "latency": prop("A latency: a fixed duration, `{uniform: [a, b]}` or `{lognormal: {median, sigma}}`.",
                        LATENCY),
    },
    "properties": {
        "seed": prop("Seed of the random generator (latency, probabilistic faults): runs are reproducible.",
                     {"type": "integer"}, 0),
        "slots": prop("Step executions that may run at once (models GPU contention).",
                      {"type": "integer", "minimum": 1, "maximum": 256}, 8),
        "with_ye": prop("Also run the YE part: pick up (user_img_input, done) variants and run img_gen.",
                        {"type": "boolean"}, False),
        "ye_poll": prop("How often the YE part looks for new (user_img_input, done) variants.",
                        {"$ref": "#/$defs/duration"}, "200ms"),
        "sweep": prop("How often the worker sweeps for variants stuck at (step, done) (missed notifications).",
                      {"$ref": "#/$defs/duration"}, "5s"),
        "max_retries": prop("A failed step is retried at most this many times, as the real system does.",
                            {"type": "integer", "minimum": 0, "maximum": 10}, 2),
        "retry_backoff": prop("How long after a failure its retry is written (a real system's back-off between "
                              "attempts).", {"$ref": "#/$defs/duration"}, "0s"),
        "stop_after": prop("Stop driving variants after this step (a partial deployment).",
                           {"$ref": "#/$defs/step"}),
        "latency": obj("Time each step takes between running and done.", {
            "default": prop("For steps not listed.", {"$ref": "#/$defs/latency"}, "0"),
            "steps": prop("Per step.", {"type": "object", "propertyNames": STEP,
                                        "additionalProperties": {"$ref": "#/$defs/latency"}}, {}),
        }, default={}),
        "faults": prop("Faults to inject; each applies where all its targets match.", {
            "type": "array",
            "items": obj("One fault.", {
                "kind": prop("fail: end at (step, failed). fail_then_retry: fail `times` times, then succeed "
                             "after the retry. hang: stay running. skip: never visit the step. backwards: after "
                             "done, return to `to`. duplicate: write the done state twice. stall_notify: "
                             "ignore the step's own notification, so only the sweep moves on. crash: the "
                             "worker exits mid-step; a restarted worker continues. duplicate_trigger (the first "
                             "job-level step): start it from both of the deployment's paths, the job row's "
                             "(last variant step, done) and the last variant's completion, so it runs twice.",
                             {"enum": FAULT_KINDS}),
                "step": prop("The step where it happens.", {"$ref": "#/$defs/step"}),
                "variants": prop("creation_order of affected variants (default: all).",
                                 {"type": "array", "minItems": 1, "uniqueItems": True,
                                  "items": {"type": "integer", "minimum": 1}}),
                "jobs": prop("Ordinal of affected jobs, in the order the worker first sees them (default: all).",
                             {"type": "array", "minItems": 1, "uniqueItems": True,
                              "items": {"type": "integer", "minimum": 1}}),
                "probability": prop("Chance that a matching step is affected.",
                                    {"type": "number", "minimum": 0, "maximum": 1}, 1),
                "times": prop("fail_then_retry: how many attempts fail before one succeeds.",
                              {"type": "integer", "minimum": 1, "maximum": 10}, 1),
                "to": prop("backwards: the earlier step returned to (default: the previous step).",
                           {"$ref": "#/$defs/step"}),
            }, required=["kind", "step"]),
        }, []),
    },
}


STEP_NAME = {"type": "string", "pattern": IDENT}
MAX_VARIANT_STEPS, MAX_JOB_STEPS, MAX_STATUSES, MAX_SEED_ROWS = 200, 50, 20, 20
"""A definition's size bounds: the deployment has ten variant steps and two job steps; these leave room to grow
and keep a run's checking of every trace small."""
STEP_DEF = {"anyOf": [
    STEP_NAME,
    obj("A step with settings.", {
        "name": prop("The step's name: the `current_step` value the pipeline writes.", STEP_NAME),
        "writes": prop("The statuses a normal run of the step writes, in order; the last must be `done`. "
                       "Some stages commit running and done at once, some write only done.",
                       {"type": "array", "minItems": 1, "maxItems": MAX_STATUSES, "uniqueItems": True,
                        "items": {"type": "string"}}, ["running", "done"]),
        "retry_to": obj("Where a failed run of the step goes when the pipeline retries it. Default: "
                        "`(step, queued)`.", {
            "step": prop("A step at or before this one, on the same row.", STEP_NAME),
            "status": prop("The status written there: `queued` (the step is queued to run again) or `done` at an "
                           "earlier step (the pipeline moves on from there; at the seeded step it starts the "
                           "variant over).", {"type": "string"}, "done"),
        }, required=["step"]),
        "simulated": prop("The YE part's step: what `simulate_img_gen` writes (at most one step).",
                          {"type": "boolean"}, False),
        "timeout": prop("The longest one run of the step takes: a scenario's step limit unless it sets "
                        "`timeouts.step` or `timeouts.steps`, and how long cleanup may wait for the pipeline.",
                        DURATION, durations.spell(definition.STEP_TIMEOUT)),
    }, required=["name"]),
]}

DEFINITION = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "ye-run pipeline definition",
    "description": "The pipeline's steps, in order, on the variants and then on the jobs row; the states a test "
                   "may seed; retry rules; how the jobs row follows its variants (`--pipeline-file`).",
    "type": "object",
    "additionalProperties": False,
    "$defs": {"step": STEP_DEF},
    "properties": {
        "$schema": prop("The schema this file follows (for editors); ignored by ye-run.", {"type": "string"}),
        "name": prop("A name for reports.", {"type": "string", "minLength": 1, "maxLength": 100}),
        "statuses": prop("The status values. `done` and `failed` must be among them.",
                         {"type": "array", "uniqueItems": True, "minItems": 2, "maxItems": MAX_STATUSES,
                          "items": STEP_NAME},
                         ["queued", "running", "done", "failed"]),
        "variant_steps": prop("The steps every variant walks, in order. The first is the state a test seeds "
                              f"(never run). At most {MAX_VARIANT_STEPS}.",
                              {"type": "array", "minItems": 2, "maxItems": MAX_VARIANT_STEPS,
                               "items": {"$ref": "#/$defs/step"}}),
        "job_steps": prop("Steps run on the jobs row, in order, once every variant is done at the last variant "
                          f"step. At most {MAX_JOB_STEPS}.",
                          {"type": "array", "maxItems": MAX_JOB_STEPS, "items": {"$ref": "#/$defs/step"}}, []),
        "seed_states": prop("The steps a scenario may seed its variants at (with status `done`); the first is the "
                            "default `start`. Default: the first variant step.",
                            {"type": "array", "minItems": 1, "maxItems": MAX_VARIANT_STEPS, "uniqueItems": True,
                             "items": STEP_NAME}),
        "seed_rows": prop("Rows every job needs beyond the core ones (the deployment's English ad copy), seeded "
                          "in the job's transaction after them, where the database has the table; a scenario may "
                          "override or leave one out (`seed_rows:`).", {
            "type": "array", "maxItems": MAX_SEED_ROWS, "items": obj("One row.", {
                "name": prop("The name a scenario uses for it.", STEP_NAME),
                "table": prop("The table (checked against the database catalog).", STEP_NAME),
                "values": prop("Column -> value; ${job.id}, ${tenant.id}, ${image.id} and ${scenario.ad_copy} are "
                               "replaced.", {"type": "object", "minProperties": 1, "maxProperties": 100,
                                             "propertyNames": {"pattern": IDENT},
                                             "additionalProperties": {"type": ["string", "number", "boolean",
                                                                               "null"]}}),
            }, required=["name", "table", "values"])}, []),
        "job_row": prop("How the jobs row follows its variants. `each_step`: (S, done) whenever every variant is "
                        "(S, done), (S, failed) as soon as one fails at S (the reference schema's trigger). "
                        "`together`: it moves only when every variant is done at the same step at the same "
                        "moment (it may skip steps); after a failure it is failed at a step no later than the "
                        "one that failed (the deployment).", {"enum": ["each_step", "together"]}, "together"),
    },
    "required": ["variant_steps"],
}


NULLABLE_STR = {"type": ["string", "null"]}
NULLABLE_NUM = {"type": ["number", "null"]}
NULLABLE_INT = {"type": ["integer", "null"]}
TIME = {"type": ["string", "null"], "format": "date-time"}


def closed(description, properties, **extra):
    """An object with every listed property required and nothing else allowed."""
    return obj(description, properties, required=list(properties), **extra)


TRANSITION = closed("One write of (current_step, status), as observed.", {
    "step": prop("current_step.", {"type": "string"}),
    "status": prop("status.", {"type": "string"}),
    "retry_count": prop("retry_count at that write (history only).", NULLABLE_INT),
    "db_time": prop("When the database recorded it.", TIME),
    "seen_time": prop("When the runner read it.", TIME),
    "since_seed": prop("Seconds from seeding the job to the runner seeing this.", {"type": "number"}),
    "source": prop("How the runner learned of it.", {"enum": ["history", "notify", "reconcile", "seed"]}),
})

ORIGIN = closed("Where the scenario wrote the expectation or limit a failure broke (for a default: its nearest "
                "written ancestor).", {
    "file": prop("The scenario file.", {"type": "string"}),
    "line": prop("Line, from 1.", {"type": "integer", "minimum": 1}),
    "col": prop("Column, from 1.", {"type": "integer", "minimum": 1}),
    "path": prop("The JSON path of the expectation, e.g. `$.expect.latency.planner.p95`.", {"type": "string"}),
})
FAILURE_FIELDS = {
    "kind": prop("The failure kind (docs/scenario-format.md lists them with the expectation each breaks).",
                 {"enum": KINDS}),
    "message": prop("One line: scenario, job, variant, step, what.", {"type": "string"}),
    "detail": prop("Expected vs observed trace, time spent vs limit.", {"type": "string"}),
    "job_ordinal": prop("Job number in the run.", NULLABLE_INT),
    "job_id": prop("The job.", NULLABLE_STR),
    "creation_order": prop("The variant's creation_order.", NULLABLE_INT),
    "variant_id": prop("The variant.", NULLABLE_STR),
    "step": prop("The step concerned.", NULLABLE_STR),
    "spent": prop("Seconds spent.", NULLABLE_NUM),
    "limit": prop("The limit in seconds.", NULLABLE_NUM),
}
FAILURE = obj("One failed assertion.", {
    **FAILURE_FIELDS,
    "origin": prop("What it broke, where; absent from reports older than the field.",
                   {"anyOf": [{"type": "null"}, ORIGIN]}),
    "at": prop("Seconds from seeding its job to the write that broke the rule (the HTML timeline marks it there); "
               "null when no write did (a timeout, a final state) and for a scenario's own failures; absent from "
               "reports older than the field.", NULLABLE_NUM),
}, required=list(FAILURE_FIELDS))

RETRY_COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
JOB = closed("One job of the run.", {
    "ordinal": prop("Job number in the run, from 1.", {"type": "integer", "minimum": 1}),
    "job_id": prop("jobs.job_id.", {"type": "string"}),
    "tenant_id": prop("The tenant it was seeded for.", {"type": "string"}),
    "asset_id": prop("The shared image asset.", {"type": "string"}),
    "outcome": prop("How it ended (`error`: the scenario ended with an error before it finished).",
                    {"enum": [o for o in OUTCOMES if o not in (Outcome.NOT_RUN, Outcome.FLAKY)]}),
    "seeded_at": prop("When it was seeded.", TIME),
    "finished_at": prop("When it was judged.", TIME),
    "duration": prop("Seconds from seeding to judgement.", NULLABLE_NUM),
    "final_state": prop("The job row's state when judged.", {"anyOf": [
        {"type": "null"}, closed("A state.", {"step": prop("Step.", {"type": "string"}),
                                              "status": prop("Status.", {"type": "string"})})]}),
    "job_trace": prop("Writes to the job row.", {"type": "array", "items": TRANSITION}),
    "variants": prop("Each variant's trace.", {"type": "array", "items": closed("A variant.", {
        "creation_order": prop("1..N.", {"type": "integer", "minimum": 1}),
        "variant_id": prop("jobs_variants.job_variants_id.", {"type": "string"}),
        "retries": prop("Retries seen, per step.", RETRY_COUNTS),
        "trace": prop("Every observed transition, in order.", {"type": "array", "items": TRANSITION}),
    })}),
    "job_retries": prop("Retries seen on the job row, per job-level step.", RETRY_COUNTS),
    "failures": prop("This job's failed assertions.", {"type": "array", "items": FAILURE}),
    "detected": prop("Failures the scenario declared in expect.detect, reported as expected.",
                     {"type": "array", "items": FAILURE}),
})

NAMES = {"type": "array", "items": {"type": "string"}}
LATENCY = obj("Latency (p99 is absent from the reports of an older ye-run).",
              {k: prop(k, {"type": "number"}) for k in ("n", "p50", "p95", "p99", "max")},
              required=["n", "p50", "p95", "max"])
PLAN = {"type": "object", "properties": {
    "tags": prop("The scenario's tags.", NAMES),
    "expected_steps": prop("The variant steps expected, in order.", NAMES),
    "expected_job_steps": prop("The job-level steps expected, in order.", NAMES),
    "latency_limits": prop("Per step, the latency limits in seconds.", {
        "type": "object", "additionalProperties": obj("One step's limits.", {
            k: prop(f"The {k} limit.", {"type": "number"}) for k in ("p50", "p95", "p99", "max")})}),
    "job_latency_limits": prop("The limits on a job's end-to-end latency, in seconds.", obj("Limits.", {
        k: prop(f"The {k} limit.", {"type": "number"}) for k in ("p50", "p95", "p99", "max")})),
}}

REPORT = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "ye-run JSON report",
    "description": "Everything a ye-run invocation observed and concluded (`ye-run run --json PATH`).",
    "type": "object",
    "additionalProperties": False,
    "required": ["format", "error", "ye_run_version", "started_at", "finished_at", "exit_code", "scenarios"],
    "properties": {
        "format": prop("Version of this format.", {"const": 1}),
        "error": prop("Why the run could not start at all (e.g. no database), else null.", NULLABLE_STR),
        "totals": prop("The grand total (scenarios by outcome).", closed("Totals.", {
            k: prop(k, {"type": "integer", "minimum": 0})
            for k in ("scenarios", "passed", "failed", "errors", "interrupted", "not_run", "cleanup_failed")})),
        "ye_run_version": prop("The ye-run that wrote it.", {"type": "string"}),
        "started_at": prop("Start of the invocation.", TIME),
        "finished_at": prop("End of the invocation.", TIME),
        "exit_code": prop("The exit code (0 passed, 1 failed, 2 bad input, 3 infrastructure, 70 a bug in ye-run, "
                          "130 interrupted).",
                          {"enum": [0, 1, 2, 3, 70, 130]}),
        "scenarios": prop("One entry per scenario run.", {"type": "array", "items": closed("A scenario run.", {
            "name": prop("Scenario name.", {"type": "string"}),
            "file": prop("Scenario file.", {"type": "string"}),
            "outcome": prop("How it ended (`not_run`: --fail-fast or an interrupt stopped the suite first).",
                            {"enum": OUTCOMES}),
            "error": prop("What ended it early, if anything.", NULLABLE_STR),
            "note": prop("Why it was not run (`not_run`): the target lacks what it needs, --fail-fast, an interrupt.",
                         NULLABLE_STR),
            "run": prop("The run id and what it seeded.", closed("The run.", {
                "run_id": prop("The run id.", {"type": "string"}),
                "record": prop("Seeded rows by table (what `ye-run cleanup --report` deletes).", {"anyOf": [
                    {"type": "null"}, closed("Seeded rows.", {
                        "run_id": prop("The run id.", {"type": "string"}),
                        "scenario": prop("Scenario name.", {"type": "string"}),
                        "tenant_id": prop("Tenant seeded for.", {"type": "string"}),
                        "tenant_created": prop("Whether the run created the tenant row.", {"type": "boolean"}),
                        "rows": prop("Table -> primary keys.", {"type": "object", "additionalProperties": {
                            "type": "array", "items": {"type": "array"}}}),
                    })]}),
            })),
            "database": prop("Where it ran.", closed("Database.", {
                "url": prop("Masked URL.", {"type": "string"}),
                "embedded": prop("The embedded default.", {"type": "boolean"})})),
            "started_at": prop("Start.", TIME),
            "finished_at": prop("End.", TIME),
            "duration": prop("Seconds.", {"type": "number"}),
            "plan": prop("The plan (as `--dry-run` prints it); the parts the reports read are typed.", PLAN),
            "observation": prop("How transitions were observed.", {"anyOf": [{"type": "null"}, closed(
                "Observation.", {
                    "method": prop("history or listen.", {"enum": ["history", "listen"]}),
                    "complete": prop("Whether gaps were impossible.", {"type": "boolean"}),
                    "description": prop("In words.", {"type": "string"}),
                    "reconnects": prop("LISTEN reconnects.", {"type": "integer", "minimum": 0}),
                    "notifications": prop("Notifications received.", {"type": "integer", "minimum": 0}),
                    "queries": prop("Queries sent by the observer.", {"type": "integer", "minimum": 0}),
                    "notes": prop("Events worth knowing.", {"type": "array", "items": {"type": "string"}})})]}),
            "jobs": prop("Per job.", {"type": "array", "items": JOB}),
            "failures": prop("Failures of the scenario as a whole.", {"type": "array", "items": FAILURE}),
            "latency": prop("Per step: n, p50, p95, p99, max seconds.", {"type": "object",
                                                                        "additionalProperties": LATENCY}),
            "job_latency": prop("Jobs end to end (seeding to the last write), over every job that ran to its end: "
                                "n, p50, p95, p99, max seconds; null when none did.",
                                {"anyOf": [{"type": "null"}, LATENCY]}),
            "cleanup": prop("The cleanup policy and what it deleted.", closed("Cleanup.", {
                "policy": prop("always, on_success, never.", {"enum": ["always", "on_success", "never"]}),
                "applied": prop("Whether rows were deleted.", {"type": "boolean"}),
                "counts": prop("Rows deleted per table.", {"type": "object",
                                                           "additionalProperties": {"type": "integer"}}),
                "notes": prop("Notes.", {"type": "array", "items": {"type": "string"}}),
                "error": prop("Why the policy could not be applied (a refusal, a lost database, a second signal); "
                              "the scenario's verdict stands.", {"type": ["string", "null"]}),
                "pending_until": prop("The rows were kept because the pipeline may still be working on them until "
                                      "then (its steps' limits): `ye-run cleanup --pending` removes them after.",
                                      {"type": ["string", "null"], "format": "date-time"})})),
            "pipeline_restarts": prop("Restarts of the in-process reference pipeline.", {"type": "integer"}),
            "delayed_creations": prop("Job creations that waited for max_in_flight.", {"type": "integer"}),
            "statements": prop("Statements the runner itself sent to the database.", {"type": "integer"}),
        })}),
    },
}

ADDED = "Absent from the reports of an older ye-run."
COUNT = {"type": "integer", "minimum": 0}
_TOTALS = REPORT["properties"]["totals"]
_TOTALS["properties"].update({
    "flaky": prop(f"Scenarios that failed, then passed on a rerun (--reruns). {ADDED}", COUNT),
    "invalid": prop(f"Files that failed to load (counted among the errors). {ADDED}", COUNT),
})
_RUN = REPORT["properties"]["scenarios"]["items"]
_RUN["properties"].update({
    "description": prop(f"What the scenario proves, as its file says. {ADDED}", {"type": "string"}),
    "invalid": prop("A file that failed to load: `name` and `file` are the file, `error` its located problems; none "
                    f"of its scenarios ran. {ADDED}", {"type": "boolean"}),
    "attempts": prop(f"Earlier attempts, oldest first, when --reruns ran the scenario again after a failure. {ADDED}",
                     {"type": "array", "items": closed("An earlier attempt.", {
                         "run_id": prop("Its run id.", {"type": "string"}),
                         "outcome": prop("How it ended.", {"enum": OUTCOMES}),
                         "duration": prop("Seconds.", {"type": "number"}),
                         "failures": prop("What failed, one line each.", NAMES)})}),
    "worker": prop(f"The session worker that ran it (with -j N). {ADDED}", {"type": "string"}),
    "summary": prop(f"The scenario's closing lines, as the console prints them. {ADDED}", NAMES),
})
REPORT["properties"].update({
    "shard": prop(f"The shard this report holds (--shard K/N), for `ye-run report merge`. {ADDED}", closed("Shard.", {
        "index": prop("K, from 1.", {"type": "integer", "minimum": 1}),
        "count": prop("N.", {"type": "integer", "minimum": 1}),
        "balanced_by": prop("How the selection was split: `durations (<source>)` or `count`.", {"type": "string"}),
        "selection": prop("Every scenario of the whole selection, before sharding.", NAMES)})),
    "merged_from": prop(f"The reports `ye-run report merge` made this one from. {ADDED}", NAMES),
})


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


OUTPUTS = {"scenario.schema.json": SCENARIO, "pipeline.schema.json": PIPELINE, "report.schema.json": REPORT,
           "definition.schema.json": DEFINITION}


def main() -> None:
    for name, schema in OUTPUTS.items():
        (ROOT / "schemas" / name).write_text(render(schema), encoding="utf-8")
        print(f"wrote schemas/{name}")


if __name__ == "__main__":
    main()
