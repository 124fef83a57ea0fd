"""The console's step table: p99 beside p50, p95 and max, the jobs end to end, and the limits each was held to."""

from __future__ import annotations

from runner.engine.results import ScenarioResult, StepLatency
from runner.report.summary import latency_table


def test_the_table_shows_each_limit_and_whether_it_held():
    result = ScenarioResult("planner-slo", "slo.yaml", "r1")
    result.latency = {"planner": StepLatency(3, 0.12, 0.18, 0.2, 0.19), "overlay": StepLatency(3, 0.01, 0.02, 0.02, 0.02)}
    result.job_latency = StepLatency(1, 1.5, 1.5, 1.5, 1.5)
    result.plan = {"latency_limits": {"planner": {"p95": 0.1, "max": 1.0}}, "job_latency_limits": {"p99": 5.0}}
    assert latency_table(result) == [
        "  step                  n       p50       p95       p99       max  limit",
        "  planner               3     120ms     180ms     190ms     200ms  p95 <= 100ms OVER, max <= 1s ok",
        "  overlay               3      10ms      20ms      20ms      20ms",
        "  jobs end to end       1      1.5s      1.5s      1.5s      1.5s  p99 <= 5s ok",
    ]


def test_without_limits_there_is_no_limit_column_and_long_step_names_fit():
    result = ScenarioResult("plain", "plain.yaml", "r2")
    result.latency = {"a_custom_definition_step": StepLatency(1, 0.001, 0.001, 0.001, 0.001)}
    assert latency_table(result) == [
        "  step                         n       p50       p95       p99       max",
        "  a_custom_definition_step     1       1ms       1ms       1ms       1ms",
    ]
