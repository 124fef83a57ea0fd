"""`compare` without noise: floors under the test, regressions first, verdict lists, full names, trends."""

from __future__ import annotations

import json
import random
import re
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner

from runner.cli.main import cli
from runner.engine.results import Outcome
from runner.report import compare, compare_view, json_report
from runner.report.compare import Thresholds
from runner.trace import Transition, VariantTrace
from tests.report.test_compare import draw, report
from tests.report.test_html import browser, chromium, open_page  # noqa: F401 (chromium is a fixture)
from tests.report.test_junit import NOW, job, scenario

LONG = "nightly-checkout-with-five-variants-and-the-overlay-retry-declared"


def saved(path: Path, doc: dict) -> str:
    """A hand-built report (`test_compare.report`) written as `ye-run run --json` writes it, through the writer."""
    results = []
    for s in doc["scenarios"]:
        run = job(1, s["outcome"])
        run.variants = {v["creation_order"]: VariantTrace(f"v{v['creation_order']}", v["creation_order"], [
            Transition(f"v{v['creation_order']}", run.job_id, "v", t["step"], t["status"],
                       datetime.fromisoformat(t["db_time"]), NOW, t["since_seed"]) for t in v["trace"]])
            for v in s["jobs"][0]["variants"]}
        results.append(scenario(s["name"], Outcome(s["outcome"]), [run]))
    path.write_text(json.dumps(json_report.document(results, 0, NOW, NOW)), encoding="utf-8")
    return str(path)


def test_a_small_step_slightly_slower_is_noise_not_a_regression():
    """img_gen 1ms -> 1.25ms: +25% and significant over 200 samples, but a quarter of a millisecond."""
    rng = random.Random(4)
    base = report({"vlm_analyze": draw(rng, 200, 0.001), "planner": draw(rng, 200, 0.2)})
    new = report({"vlm_analyze": draw(rng, 200, 0.00125), "planner": draw(rng, 200, 0.2)})
    (tiny,) = [c for c in compare.compare(base, new).steps if c.step == "vlm_analyze"]
    assert tiny.p_value is not None and tiny.p_value < 0.01 and (tiny.change or 0) > 0.2
    assert not tiny.regression
    assert [c.step for c in compare.compare(base, new, Thresholds(delta=0.0)).regressions] == ["vlm_analyze"]


def test_a_large_change_that_is_not_significant_is_not_a_regression(tmp_path: Path):
    """Three samples a side: planner almost four times slower (+273%, +300 ms) clears both floors, but a one-sided
    Mann-Whitney U test on 3 against 3 cannot go below p = 0.05; --alpha is the option that decides."""
    base = saved(tmp_path / "base.json", report({"vlm_analyze": [0.1] * 3, "planner": [0.10, 0.11, 0.12]}))
    new = saved(tmp_path / "new.json", report({"vlm_analyze": [0.1] * 3, "planner": [0.40, 0.41, 0.42]}))
    strict = CliRunner().invoke(cli, ["compare", base, new, "--fail-on-regression"])
    assert strict.exit_code == 0, strict.output
    (planner,) = [line for line in strict.stdout.splitlines() if line.split()[:2] == ["nightly", "planner"]]
    assert planner.split()[-4:] == ["+273%", "+300ms", "0.05", "1.00"]  # no REGRESSION at the default p < 0.01
    loose = CliRunner().invoke(cli, ["compare", base, new, "--fail-on-regression", "--alpha", "0.1"])
    assert loose.exit_code == 1, loose.output
    assert loose.stdout.splitlines()[-1].startswith("1 regression(s) (slower at the median by more than 20% and "
                                                    "10ms, at p < 0.1)")


def test_a_uniformly_loaded_machine_raises_no_alarm_on_millisecond_steps():
    """Every step of a 2 ms pipeline 30% slower (another job on the machine): 0 regressions in 100 trials."""
    rng = random.Random(5)
    alarms = 0
    for _ in range(100):
        base = report({step: draw(rng, 30, 0.002) for step in ("vlm_analyze", "planner")})
        new = report({step: draw(rng, 30, 0.0026) for step in ("vlm_analyze", "planner")})
        alarms += len(compare.compare(base, new).regressions)
    assert alarms == 0


def test_regressions_come_first_and_regressions_only_hides_the_rest(tmp_path: Path):
    rng = random.Random(6)
    base = saved(tmp_path / "base.json", report({"vlm_analyze": draw(rng, 30, 0.2), "planner": draw(rng, 30, 0.5)}))
    new = saved(tmp_path / "new.json", report({"vlm_analyze": draw(rng, 30, 0.2), "planner": draw(rng, 30, 0.9)}))
    full = CliRunner().invoke(cli, ["compare", base, new])
    assert full.exit_code == 0, full.output
    rows = [line.split()[1] for line in full.stdout.splitlines() if line.startswith("nightly ")]
    assert rows == ["planner", "vlm_analyze"]  # the pipeline's order would put vlm_analyze first
    page = tmp_path / "only.html"
    only = CliRunner().invoke(cli, ["compare", base, new, "--regressions-only", "--html", str(page)])
    assert [line.split()[1] for line in only.stdout.splitlines() if line.startswith("nightly ")] == ["planner"]
    assert only.stdout.splitlines()[-1].startswith("1 regression(s) (slower at the median by more than 20% and 10ms")
    assert re.findall(r"<td>(\w+)(?: — regression)?</td>", page.read_text()) == ["planner"]


def test_the_floors_are_options(tmp_path: Path):
    rng = random.Random(7)
    base = saved(tmp_path / "base.json", report({"vlm_analyze": draw(rng, 30, 0.02), "planner": draw(rng, 30, 0.5)}))
    new = saved(tmp_path / "new.json", report({"vlm_analyze": draw(rng, 30, 0.035), "planner": draw(rng, 30, 0.5)}))
    assert "1 regression(s)" in CliRunner().invoke(cli, ["compare", base, new]).stdout  # about +15 ms, +75%
    loose = CliRunner().invoke(cli, ["compare", base, new, "--min-delta", "20ms"])
    assert loose.stdout.splitlines()[-1].startswith("0 regression(s) (slower at the median by more than 20% and 20ms")
    assert "0 regression(s)" in CliRunner().invoke(cli, ["compare", base, new, "--max-slowdown", "150%"]).stdout
    bad = CliRunner().invoke(cli, ["compare", base, new, "--min-delta", "5"])
    assert bad.exit_code == 2 and "--min-delta '5': bad duration" in bad.stderr
    one = CliRunner().invoke(cli, ["compare", base])
    assert one.exit_code == 2 and "compare needs two reports at least" in one.stderr


def test_verdicts_are_lists_with_still_failing_and_names_are_whole(tmp_path: Path):
    samples = {"vlm_analyze": [0.1] * 3, "planner": [0.2] * 3}

    def night(path: Path, outcomes: dict[str, str]) -> str:
        return saved(path, {"scenarios": [report(samples, outcome, name)["scenarios"][0]
                                          for name, outcome in outcomes.items()]})

    base = night(tmp_path / "base.json", {LONG: "failed", "broke": "passed", "mended": "failed"})
    new = night(tmp_path / "new.json", {LONG: "failed", "broke": "failed", "mended": "passed"})
    result = CliRunner().invoke(cli, ["compare", base, new, "--fail-on-regression"])
    assert result.exit_code == 1
    assert ("newly failing (1):\n  broke\nstill failing (1):\n  " + LONG + "\nfixed (1):\n  mended\n") in result.stdout
    assert [line.split()[:2] for line in result.stdout.splitlines() if line.startswith(LONG)] == [
        [LONG, "vlm_analyze"], [LONG, "planner"]]
    assert result.stdout.splitlines()[-1].endswith("1 newly failing, 1 still failing, 1 fixed, 0 not run")


def test_more_than_two_reports_show_each_steps_trend(tmp_path: Path):
    nights = [0.20, 0.21, 0.40, 0.60]
    paths = [saved(tmp_path / f"night{i}.json", report({"vlm_analyze": [0.1] * 5, "planner": [p50] * 5}))
             for i, p50 in enumerate(nights)]
    page = tmp_path / "trend.html"
    result = CliRunner().invoke(cli, ["compare", *paths, "--html", str(page)])
    assert result.exit_code == 0, result.output
    (planner,) = [line for line in result.stdout.splitlines() if line.split()[:2] == ["nightly", "planner"]]
    assert planner.endswith("▁▁▅█ 200ms–600ms  REGRESSION"), planner  # the last two compared: 400 ms -> 600 ms
    text = page.read_text()
    assert 'aria-label="p50 per run, oldest first: 200ms, 210ms, 400ms, 600ms"' in text
    assert text.count('class="trend"') == 2
    assert '<span class="meta range">200ms–600ms</span>' in text  # how far it moved: each line has its own scale
    assert f"4 runs, oldest first: {' → '.join(paths)}; the last two compared" in text


def test_one_scale_per_table_with_its_axis():
    rng = random.Random(8)
    base = report({"vlm_analyze": draw(rng, 30, 0.01), "planner": draw(rng, 30, 0.5)})
    new = report({"vlm_analyze": draw(rng, 30, 0.01), "planner": draw(rng, 30, 0.5)})
    page = compare_view.render_html(compare.compare(base, new), ["a", "b"], Thresholds())
    scales = set(re.findall(r'class="dist"[^>]*aria-label="[^"]*on a scale of ([^"]+)"', page))
    assert len(re.findall(r'class="dist"', page)) == 4 and scales == {"0ms to 800ms"}
    assert page.count('<svg class="axis"') == 2 and 'aria-label="scale: 0ms to 800ms"' in page


@browser
def test_the_axis_labels_never_run_into_each_other(chromium, tmp_path: Path):  # noqa: F811 (the fixture)
    """0 to 800 ms in 200 ms ticks: "600ms" and "800ms" would print as one "600ms800ms"; labels that would touch are
    left out (the tick stays), the ends always shown. Measured in Chromium, so fonts are the browser's own."""
    rng = random.Random(9)
    for high in (0.75, 0.08, 0.00095, 0.0024, 3.9):
        base = report({"vlm_analyze": draw(rng, 30, high / 3), "planner": draw(rng, 30, high / 1.25, 0.05)})
        path = tmp_path / f"axis-{high}.html"
        path.write_text(compare_view.render_html(compare.compare(base, base), ["a", "b"], Thresholds()))
        blocked, errors = [], []
        page = open_page(chromium, path, blocked, errors)
        for axis in page.locator("svg.axis").all():
            boxes = axis.evaluate("a => [...a.querySelectorAll('text')].map(t => { const b = t.getBBox(); "
                                  "return [b.x, b.x + b.width, t.textContent]; })")
            assert len(boxes) >= 2 and boxes[0][2] == "0ms", boxes
            assert boxes[-1][1] <= 160.5 and boxes[0][0] >= -0.5, boxes  # inside the axis
            for (_, right, text), (left, _, after) in zip(boxes, boxes[1:]):
                assert right + 1 < left, f"{text!r} runs into {after!r}: {boxes}"
        assert blocked == [] and errors == []
