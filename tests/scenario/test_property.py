"""Generated and mutated YAML: the loader either loads it or raises ScenarioError; never a traceback."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import ScenarioError
from runner.scenario import loader, model

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "scenarios").glob("[!_]*.yaml"))]
WORK = Path(tempfile.mkdtemp(prefix="ye-run-prop-"))
KEYS = ["name", "variants", "mode", "type", "jobs", "interval", "expect", "steps", "stop_after", "retries",
        "failures", "step", "variants", "timeouts", "stall", "job", "tenant", "id", "isolate", "store",
        "simulate_img_gen", "delay", "fail_variants", "fixtures", "table", "rows", "sql", "query", "equals",
        "reference_pipeline", "faults", "kind", "latency", "extends", "images", "<<", "final", "status"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 200), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["once", "interval", "30s", "5m", "0", "planner", "overlay", "iou_eval", "done", "all",
                     "${job.id}", "${variant.2.id}", "select 1", "ye_test", "&a x", "*a", "!!binary aGk=",
                     "2026-11-26", "~", "yes", "0x1F", ".inf"]),
    st.text(max_size=12),
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(KEYS), children, max_size=5)),
    max_leaves=25,
)


def load_text(text: str) -> None:
    path = WORK / "case.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        result = loader.load(path)
    except ScenarioError as exc:
        assert exc.problems, "a ScenarioError must carry at least one problem"
        for problem in exc.problems:
            assert problem.line >= 1 and problem.col >= 1 and problem.message
    else:
        assert isinstance(result, model.Scenario)


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(DOCUMENTS)
def test_generated_documents(document):
    load_text(yaml.safe_dump(document, allow_unicode=True))


@FAST
@given(st.text(alphabet=st.sampled_from(list("abc:-[]{}&*!|>'\"#\n\t 0123456789.,?%@`")), max_size=120))
def test_yaml_like_noise(text):
    load_text(text)


@FAST
@given(st.sampled_from(SHIPPED), st.data())
def test_mutated_shipped_scenarios(text, data):
    lines = text.splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "indent", "truncate"]))
        i = data.draw(st.integers(0, max(len(lines) - 1, 0)))
        if not lines:
            break
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = data.draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "insert":
            lines.insert(i, data.draw(st.sampled_from(["  x: 1", "variants: -1", "- a", "mode: {type: once",
                                                       "<<: *missing", "&anchor", "expect: [1"])))
        elif op == "indent":
            lines[i] = " " * data.draw(st.integers(1, 4)) + lines[i]
        else:
            col = data.draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:col]
    load_text("\n".join(lines) + "\n")
