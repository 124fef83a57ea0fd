"""The HTML report of a run of 1,000 jobs x 3 variants: its size, and its first render in headless Chromium.

A real run of one passing job is recorded (embedded default, its own data directory), its job
copied to 1,000; the page is rendered and opened in Debian's Chromium through Playwright, timing
`goto` until the load event and until the first paint, and the time to open and draw one job.

    python bench/html.py
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.report import html  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def one_job_report(tmp: Path) -> dict:
    env = {**os.environ, "YE_EMBEDDED_DIR": str(tmp / "pg"), "CI": "true"}
    env.pop("YE_DATABASE_URL", None)
    out = tmp / "run.json"
    done = subprocess.run([str(Path(sys.executable).with_name("ye-run")), "-q", "scenarios/smoke.yaml", "--json",
                           str(out), "--asset-dir", str(tmp / "assets")], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    return json.loads(out.read_text())


def thousand(doc: dict, jobs: int = 1000) -> dict:
    big = copy.deepcopy(doc)
    scenario = big["scenarios"][0]
    scenario["jobs"] = [{**copy.deepcopy(scenario["jobs"][0]), "ordinal": i + 1} for i in range(jobs)]
    return big


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        doc = thousand(one_job_report(tmp))
        started = time.perf_counter()
        page_path = tmp / "big.html"
        html.write(page_path, doc)
        rendered = time.perf_counter() - started
        size = page_path.stat().st_size
        loads, paints, opens = [], [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                                        "--disable-background-networking"])
            for _ in range(5):
                page = browser.new_page()
                begin = time.perf_counter()
                page.goto(page_path.as_uri(), wait_until="load")
                loads.append(time.perf_counter() - begin)
                paints.append(page.evaluate("performance.getEntriesByType('paint').map(e => e.startTime)"
                                            ".reduce((a, b) => Math.max(a, b), 0)") / 1000)
                begin = time.perf_counter()
                page.locator("#s-smoke-job-500 > summary").click()
                page.locator("#s-smoke-job-500 rect.seg").first.wait_for()
                opens.append(time.perf_counter() - begin)
                page.close()
            browser.close()
    print(f"1,000 jobs x 3 variants: {size / 1e6:.2f} MB, rendered by ye-run in {rendered:.2f}s")
    print(f"headless Chromium, median of 5: load {statistics.median(loads):.2f}s, first paint "
          f"{statistics.median(paints):.2f}s, open and draw one job {statistics.median(opens) * 1000:.0f}ms")


if __name__ == "__main__":
    main()
