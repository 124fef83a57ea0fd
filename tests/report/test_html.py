"""The HTML report: self-contained, escaped, and usable in a real headless Chromium (Debian's, via Playwright)."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli.main import cli
from runner.db.connect import Database
from runner.report import failurelist, html

CHROMIUM = "/usr/bin/chromium"
FAILING = """\
name: skip-demo
tags: [demo]
tenant: {id: ye_html_test, isolate: true}
simulate_img_gen: true
mode: {type: wait_for_completion, jobs: 2}
expect: {latency: {planner: {max: 30ms}}}
reference_pipeline:
  latency: {default: 5ms, steps: {planner: 60ms}}
  faults: [{kind: skip, step: yolo_detect, variants: [2], jobs: [1]}]
"""
PASSING = "name: fine\ntags: [smoke]\ntenant: {id: ye_html_test, isolate: true}\nsimulate_img_gen: true\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, embedded_server: Database) -> tuple[dict, Path]:
    folder = tmp_path_factory.mktemp("html")
    (folder / "failing.yaml").write_text(FAILING)
    (folder / "passing.yaml").write_text(PASSING)
    out = folder / "run.json"
    result = CliRunner().invoke(cli, ["run", str(folder / "passing.yaml"), str(folder / "failing.yaml"),
                                      "--database-url", embedded_server.url.render_as_string(hide_password=False),
                                      "--reference-pipeline", "--json", str(out), "--html", str(folder / "run.html")])
    assert result.exit_code == 1, result.output
    return json.loads(out.read_text()), folder / "run.html"


def test_the_page_is_self_contained_and_escapes_what_it_shows(report):
    doc, page = report
    text = page.read_text()
    assert re.findall(r"(?:src|href)=\"(?:https?:)?//", text) == [] and "@import" not in text
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    hostile = copy.deepcopy(doc)
    failing = next(s for s in hostile["scenarios"] if s["failures"])
    failing["name"] = "<script>alert(1)</script>"
    failing["failures"][0]["message"] = "</script><img src=x onerror=alert(1)>"
    rendered = html.render(hostile)
    assert "<script>alert(1)</script>" not in rendered and "<img src=x" not in rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered


def test_ye_run_report_renders_a_saved_json_report(report, tmp_path: Path):
    doc, _ = report
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(doc))
    result = CliRunner().invoke(cli, ["report", str(saved), "--html", str(tmp_path / "again.html")])
    assert result.exit_code == 0 and (tmp_path / "again.html").read_text().count('class="scenario"') == 2
    saved.write_text("{}")
    bad = CliRunner().invoke(cli, ["report", str(saved), "--html", str(tmp_path / "x.html")])
    assert bad.exit_code == 2 and "not a ye-run JSON report" in bad.stderr


def big_report(doc: dict, jobs: int = 1000) -> dict:
    """The passing scenario's job, a thousand times (3 variants each)."""
    big = copy.deepcopy(doc)
    scenario = next(s for s in big["scenarios"] if s["name"] == "fine")
    template = scenario["jobs"][0]
    scenario["jobs"] = [{**copy.deepcopy(template), "ordinal": i + 1} for i in range(jobs)]
    big["scenarios"] = [scenario]
    return big


def test_a_thousand_jobs_stay_small(report):
    doc, _ = report
    rendered = html.render(big_report(doc))
    assert len(rendered.encode()) < 5_000_000


browser = pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which("chromium") is None,
                             reason="Debian's chromium is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def chromium():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync"])
        yield instance
        instance.close()


def open_page(chromium, path: Path, blocked: list[str], errors: list[str], viewport=(1280, 900)):  # type: ignore[no-untyped-def]
    context = chromium.new_context(viewport={"width": viewport[0], "height": viewport[1]})

    def route(r):  # type: ignore[no-untyped-def]
        if r.request.url.startswith("file:"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    return page


@browser
def test_the_page_in_chromium_matches_the_report_and_filters_work(report, chromium, tmp_path: Path):
    doc, path = report
    blocked, errors = [], []
    page = open_page(chromium, path, blocked, errors)
    failing = next(s for s in doc["scenarios"] if s["name"] == "skip-demo")
    expected_failures = len(failing["failures"]) + sum(len(j["failures"]) for j in failing["jobs"])
    assert page.locator("#s-skip-demo .failure").count() == expected_failures
    page.screenshot(path=str(tmp_path / "failing-run.png"), full_page=True)  # kept as the test's artifact
    for details in page.locator("details.job").all():
        details.evaluate("d => { d.open = true; d.dispatchEvent(new Event('toggle')); }")
    for scenario in doc["scenarios"]:
        anchor = "s-" + scenario["name"]
        for job in scenario["jobs"]:
            lanes = len(job["variants"]) + (1 if job["job_trace"] else 0)
            labels = page.locator(f"#{anchor}-job-{job['ordinal']} .timeline svg > text").all_text_contents()
            assert [t for t in labels if t.startswith(("variant #", "job row"))] == \
                [f"variant #{v['creation_order']}" for v in job["variants"]] + ["job row"][: lanes - len(job["variants"])]
    assert page.locator("#s-skip-demo-job-1 rect.seg").count() > 0
    page.check("#f-failed")
    assert [s.get_attribute("id") for s in page.locator("section.scenario:not(.hidden)").all()] == ["s-skip-demo"]
    page.uncheck("#f-failed")
    page.select_option("#f-tag", "smoke")
    assert [s.get_attribute("id") for s in page.locator("section.scenario:not(.hidden)").all()] == ["s-fine"]
    page.select_option("#f-tag", "")
    page.fill("#f-name", "skip")
    assert [s.get_attribute("id") for s in page.locator("section.scenario:not(.hidden)").all()] == ["s-skip-demo"]
    assert blocked == [] and errors == []


@browser
def test_a_deep_link_opens_its_job_and_a_thousand_jobs_open(report, chromium, tmp_path: Path):
    doc, path = report
    blocked, errors = [], []
    page = open_page(chromium, Path(str(path)), blocked, errors)
    page.goto(path.as_uri() + "#s-fine-job-1")
    assert page.locator("#s-fine-job-1").evaluate("d => d.open") is True
    assert page.locator("#s-fine-job-1 rect.seg").count() > 0
    big = tmp_path / "big.html"
    html.write(big, big_report(doc))
    page = open_page(chromium, big, blocked, errors)
    assert page.locator("details.job").count() == 1000
    assert page.locator("rect.seg").count() == 0  # passed jobs are drawn on demand
    page.locator("#s-fine-job-1000 > summary").click()
    assert page.locator("#s-fine-job-1000 rect.seg").count() > 0
    assert blocked == [] and errors == []


def test_a_failures_reason_is_its_message_without_the_place():
    assert failurelist.reason("nightly › job 3 (9f1c) › variant #2 (77ab) › yolo_detect: skipped yolo_detect "
                              "(went from vlm_analyze straight to planner)\nmore") == \
        "skipped yolo_detect (went from vlm_analyze straight to planner)"
    assert failurelist.reason("nightly › planner: p95 latency 180ms is over the limit 100ms (n=30)") == \
        "p95 latency 180ms is over the limit 100ms (n=30)"
    assert failurelist.reason("nightly › job 1: the job row ended (iou_eval, done)") == "the job row ended (iou_eval, done)"
    assert failurelist.reason("database lost: connection refused") == "database lost: connection refused"


def test_only_the_diffs_lines_are_marked():
    detail = "  time at yolo_detect: 5ms\n- not a diff line\n  expected (-) vs observed (+):\n      img_gen done\n" \
             "    - yolo_detect done\n    + planner running  (+23ms)"
    assert [kind for kind, _ in failurelist.detail_lines(detail)] == ["", "", "", "", "del", "ins"]


def test_failures_come_first_worst_scenario_first(report, tmp_path: Path):
    doc, _ = report
    assert [s["name"] for s in doc["scenarios"]] == ["fine", "skip-demo"]  # the order they ran in
    page = html.render(doc)
    assert re.findall(r'<section class="scenario" id="([^"]+)"', page) == ["s-skip-demo", "s-fine"]
    listed = re.search(r'<section id="failures".*?</section>', page, re.S).group(0)
    failing = next(s for s in doc["scenarios"] if s["name"] == "skip-demo")
    (skip,) = [f for j in failing["jobs"] for f in j["failures"] if f["kind"] == "skipped_step"]
    rows = re.findall(r"<tr class=\"listed\"[^>]*><td>.*?</span> ([^<]+)</td><td class=\"num\">([^<]*)</td>"
                      r"<td>([^<]*)</td><td>([^<]*)</td><td class=\"reason\">([^<]*)</td><td><a href=\"#([^\"]+)\"",
                      listed)
    assert rows == [("skip-demo", "", "", "planner", "max latency " + rows[0][4].split("max latency ")[1], "s-skip-demo-f1"),
                    ("skip-demo", "1", "#2", "yolo_detect",
                     "skipped yolo_detect (went from vlm_analyze straight to planner)", "s-skip-demo-job-1-f1")]
    assert skip["creation_order"] == 2 and 'id="s-skip-demo-job-1-f1"' in page


@browser
def test_the_first_screen_lists_the_failures_and_a_link_opens_one(report, chromium):
    doc, path = report
    blocked, errors = [], []
    page = open_page(chromium, path, blocked, errors)
    rows = page.locator("#failures tr.listed")
    assert rows.count() == 2
    assert rows.last.bounding_box()["y"] + rows.last.bounding_box()["height"] < 900  # on the first screen
    page.locator("#s-skip-demo-job-1").evaluate("d => { d.open = false; }")
    rows.last.locator("a").click()
    assert page.locator("#s-skip-demo-job-1").evaluate("d => d.open") is True
    assert page.locator("#s-skip-demo-job-1-f1").is_visible()
    assert page.evaluate("location.hash") == "#s-skip-demo-job-1-f1"
    assert blocked == [] and errors == []


@browser
def test_the_filter_is_in_the_url(report, chromium):
    _, path = report
    blocked, errors = [], []
    page = open_page(chromium, path, blocked, errors)
    page.goto(path.as_uri() + "?only=failed")
    assert page.locator("#f-failed").is_checked()
    assert [s.get_attribute("id") for s in page.locator("section.scenario:not(.hidden)").all()] == ["s-skip-demo"]
    page.uncheck("#f-failed")
    assert page.evaluate("location.search") == ""
    page.select_option("#f-tag", "smoke")
    page.fill("#f-name", "Fi")
    assert page.evaluate("location.search") == "?tag=smoke&name=Fi"
    assert [s.get_attribute("id") for s in page.locator("section.scenario:not(.hidden)").all()] == ["s-fine"]
    assert page.locator("#failures tr.listed:not(.hidden)").count() == 0  # the list follows the filter
    page.goto(path.as_uri() + "?tag=smoke&name=Fi#s-fine")
    assert [s.get_attribute("id") for s in page.locator("section.scenario:not(.hidden)").all()] == ["s-fine"]
    page.goto(path.as_uri())
    page.click("#only-failed")
    assert page.evaluate("location.search") == "?only=failed" and page.locator("#f-failed").is_checked()
    assert blocked == [] and errors == []


@browser
def test_the_timeline_marks_where_it_failed_and_the_job_row_shows_its_own_steps(report, chromium):
    doc, path = report
    failing = next(s for s in doc["scenarios"] if s["name"] == "skip-demo")
    job = failing["jobs"][0]
    (skip,) = [f for f in job["failures"] if f["kind"] == "skipped_step"]
    trace = next(v["trace"] for v in job["variants"] if v["creation_order"] == 2)
    after = next(t for t in trace if t["step"] == "planner")  # the write that skipped yolo_detect
    assert skip["at"] == after["since_seed"]
    blocked, errors = [], []
    page = open_page(chromium, path, blocked, errors)
    marks = page.locator("#s-skip-demo-job-1 .fail-mark")
    assert marks.count() == 1
    assert marks.first.get_attribute("data-lane") == "variant #2"
    assert marks.first.get_attribute("data-at") == str(round(after["since_seed"] * 1000))
    own = failing["plan"]["expected_job_steps"]
    labels = page.locator('#s-skip-demo-job-1 .label[data-lane="job row"]').all_text_contents()
    assert labels == [" → ".join(own) + " ▸"] or sorted(labels) == sorted(own)
    before_own = next(i for i, t in enumerate(job["job_trace"]) if t["step"] in own)
    assert page.locator("#s-skip-demo-job-1 rect.seg.following").count() == before_own
    assert blocked == [] and errors == []


@browser
def test_diff_lines_are_coloured_and_distributions_share_an_axis(report, chromium):
    doc, path = report
    blocked, errors = [], []
    page = open_page(chromium, path, blocked, errors)
    removed = page.locator("#s-skip-demo-job-1-f1 pre .del")
    assert [t.strip() for t in removed.all_text_contents()] == ["- yolo_detect running", "- yolo_detect done"]
    colour = removed.first.evaluate("e => getComputedStyle(e).backgroundColor")
    plain = page.locator("#s-skip-demo-job-1-f1 pre").evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour != plain
    for anchor in ("s-skip-demo", "s-fine"):
        scales = {label.split("on a scale of ")[1] for label in page.locator(f"#{anchor} table.latency svg.dist")
                  .evaluate_all("svgs => svgs.map(s => s.getAttribute('aria-label'))")}
        axis = page.locator(f"#{anchor} table.latency svg.axis").get_attribute("aria-label")
        assert len(scales) == 1 and axis == "scale: " + scales.pop()
    assert blocked == [] and errors == []


def test_the_headline_says_what_the_console_says(report):
    """Interrupted, flaky, invalid files and cleanups not done are in the page's totals line as in the console's
    (the page used to leave them out: after a double Ctrl+C it showed only '2 not run')."""
    from runner.engine.results import Totals

    doc = copy.deepcopy(report[0])
    doc["totals"] = {"scenarios": 6, "passed": 0, "failed": 0, "errors": 0, "interrupted": 4, "not_run": 2,
                     "cleanup_failed": 4, "flaky": 0, "invalid": 0}
    rendered = html.render(doc)
    expected = Totals(6, interrupted=4, not_run=2, cleanup_failed=4).counts()
    assert expected == "6 scenarios: 0 passed, 0 failed, 0 errors, 4 interrupted, 2 not run; 4 cleanup(s) not done"
    assert expected in rendered
