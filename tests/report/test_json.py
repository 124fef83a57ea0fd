"""The JSON writer renders a long run's jobs one at a time, and says exactly what json.dumps would."""

from __future__ import annotations

import json
import tracemalloc
from datetime import timedelta
from pathlib import Path

from runner import resources
from runner.engine.results import JobResult, Outcome
from runner.report import json_report
from runner.trace import Transition, VariantTrace
from tests.report.test_junit import NOW, job, scenario

STEPS = ("user_img_input", "img_gen", "yolo_detect", "planner", "overlay", "vlm_judge", "ocr_eval",
         "readability_eval", "iou_eval")


def traced(ordinal: int) -> JobResult:
    result = job(ordinal, "passed")
    variant = result.seeded.variants[0]
    transitions = [Transition(variant.id, result.job_id, "v", step, status, NOW + timedelta(seconds=i),
                              NOW + timedelta(seconds=i, milliseconds=3), float(i))
                   for i, (step, status) in enumerate((s, st) for s in STEPS for st in ("running", "done"))]
    result.variants = {variant.id: VariantTrace(variant.id, 1, transitions)}
    return result


def materialized(results) -> str:  # type: ignore[no-untyped-def]
    return json.dumps(json_report.document(results, 0, NOW, NOW), indent=2, ensure_ascii=False) + "\n"


def test_the_streamed_report_is_byte_for_byte_what_json_dumps_writes(tmp_path: Path):
    results = [scenario("long", Outcome.PASSED, [traced(i) for i in range(1, 6)]),
               scenario("empty", Outcome.ERROR, [], error="naïve: \"quoted\"\nsecond line")]
    path = tmp_path / "report.json"
    doc = json_report.document(results, 0, NOW, NOW, lazy=True)
    assert isinstance(doc["scenarios"][0]["jobs"], json_report.Lazy)
    json_report.write(path, doc)
    assert path.read_text(encoding="utf-8") == materialized(results)
    parsed = json.loads(path.read_text())
    resources.validator("report.schema.json").validate(parsed)
    assert [j["ordinal"] for j in parsed["scenarios"][0]["jobs"]] == [1, 2, 3, 4, 5]
    assert len(parsed["scenarios"][0]["jobs"][0]["variants"][0]["trace"]) == 2 * len(STEPS)


def test_writing_a_long_run_never_holds_the_whole_document(tmp_path: Path):
    results = [scenario("soak", Outcome.PASSED, [traced(i) for i in range(1, 1001)])]
    path = tmp_path / "report.json"
    tracemalloc.start()
    try:
        json_report.write(path, json_report.document(results, 0, NOW, NOW, lazy=True))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = path.stat().st_size
    assert size > 4_000_000  # 1,000 jobs of 18 transitions each
    assert peak < size / 20, (peak, size)  # one job's JSON at a time, not the document


def test_the_html_page_reads_a_lazy_document_once_and_shows_what_the_materialised_one_does(tmp_path: Path):
    """The HTML reporter renders from the same lazy document as the JSON writer: jobs read one at a time (a long
    run's come from its job log on disk), the page the same as from a document held whole."""
    from runner.report import html

    results = [scenario("soak", Outcome.PASSED, [traced(i) for i in range(1, 301)])]
    lazy = json_report.document(results, 0, NOW, NOW, lazy=True)
    whole = json_report.document(results, 0, NOW, NOW)
    assert html.render(lazy) == html.render(whole)
    tracemalloc.start()
    try:
        html.render(json_report.document(results, 0, NOW, NOW, lazy=True))
        _, lazy_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        html.render(json_report.document(results, 0, NOW, NOW))
        _, whole_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lazy_peak < whole_peak / 2, (lazy_peak, whole_peak)
