"""JUnit XML for CI (Jenkins, GitLab): one testsuite per scenario, one testcase per job.

Names are stable across nights (`job 1` in `ye-run.<scenario>`; ids and run ids go to
<properties>), so CI history, "fixed since" and flaky tracking work. A job's failures become
one <failure> (message: the first; text: all of them). Failures of the scenario as a whole
(latency limits) get a testcase of their own; an error that ended the scenario (database lost,
bad input at run time) is an <error>; an interrupted job or a scenario not run is <skipped>.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from pathlib import Path

from runner.engine.results import JobResult, ScenarioResult
from runner.trace import Failure
from runner.report import safe
from runner.report.summary import summary


class JUnitReporter:
    """Writes the file when the session finishes, whatever ended it."""

    def __init__(self, path: Path):
        self.path = path

    def start(self) -> None:
        """Nothing to write until the end."""

    def handle(self, event: object) -> None:
        """The results hold everything the file says."""

    def finish(self, outcome) -> None:  # type: ignore[no-untyped-def]
        write(self.path, outcome.results, None if outcome.error is None else str(outcome.error))


def write(path: Path, results: list[ScenarioResult], error: str | None = None,
          invalid: dict[str, list[str]] | None = None) -> None:
    """The JUnit file; `error` (the run could not start or go on: no database, a bug) is a testsuite of its own,
    and so is each invalid scenario file (`invalid`: file -> its problems)."""
    root = ET.Element("testsuites", name="ye-run")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    duration = 0.0
    for result in results:
        suite = _suite(result)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
        duration += result.duration
    errors = [("run", error)] if error else []
    errors += [(file, "\n".join(problems)) for file, problems in (invalid or {}).items()]
    for name, text in errors:
        suite = ET.SubElement(root, "testsuite", name=name if name != "run" else "ye-run", tests="1", failures="0",
                              errors="1", time="0.000")
        case = ET.SubElement(suite, "testcase", name=name, classname="ye-run", time="0.000")
        ET.SubElement(case, "error", message=text.splitlines()[0], type="error").text = text
        totals["tests"] += 1
        totals["errors"] += 1
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", str(totals["errors"]))
    root.set("time", _time(duration))
    for element in root.iter():
        element.text = safe.xml(element.text)
        for key, value in element.attrib.items():
            element.set(key, safe.xml(value) or "")
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _suite(result: ScenarioResult) -> ET.Element:
    suite = ET.Element("testsuite", name=result.name)
    if result.started_at is not None:
        suite.set("timestamp", result.started_at.replace(tzinfo=None).isoformat(timespec="seconds"))
    suite.set("hostname", socket.gethostname())
    suite.set("time", _time(result.duration))
    suite.set("file", result.path)
    properties = ET.SubElement(suite, "properties")
    definition = result.plan.get("definition", {})
    for name, value in (("run_id", result.run_id), ("database", result.database),
                        ("observation", result.observation.method if result.observation else "none"),
                        ("outcome", result.outcome), ("worker", result.worker),
                        ("pipeline_definition", f"{definition.get('name', '')} {definition.get('sha256', '')[:12]}")):
        ET.SubElement(properties, "property", name=name, value=str(value))
    cases = [_job_case(result, job) for job in result.jobs]
    if result.outcome == "not_run":
        case = _case(result, "scenario", 0.0)
        ET.SubElement(case, "skipped", message=result.note or "not run")
        cases.append(case)
    if result.failures:
        cases.append(_case(result, "scenario checks", result.duration, failures=result.failures))
    if result.error:
        cases.append(_case(result, "scenario", result.duration, error=result.error))
    suite.extend(cases)
    out = ET.SubElement(suite, "system-out")
    out.text = "\n".join(summary(result))
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
    suite.set("errors", str(sum(1 for c in cases if c.find("error") is not None)))
    suite.set("skipped", str(sum(1 for c in cases if c.find("skipped") is not None)))
    return suite


def _job_case(result: ScenarioResult, job: JobResult) -> ET.Element:
    case = _case(result, f"job {job.ordinal}", job.duration or 0.0, failures=job.failures)
    properties = ET.SubElement(case, "properties")
    for name, value in (("job_id", job.job_id), ("run_id", result.run_id), ("tenant_id", job.seeded.tenant_id)):
        ET.SubElement(properties, "property", name=name, value=value)
    if job.outcome == "interrupted":
        ET.SubElement(case, "skipped", message="interrupted before the job finished")
    elif job.outcome in ("error", "running"):
        text = result.error or "the scenario ended before this job finished"
        ET.SubElement(case, "error", message=f"did not finish: {text.splitlines()[0]}", type="error").text = text
    elif job.outcome == "seeded":
        ET.SubElement(case, "skipped", message="seeded only (observe: false)")
    return case


def _case(result: ScenarioResult, name: str, seconds: float, failures: list[Failure] | None = None,
          error: str | None = None) -> ET.Element:
    case = ET.Element("testcase", name=name, classname=f"ye-run.{result.name}", time=_time(seconds))
    if failures:
        failure = ET.SubElement(case, "failure", message=failures[0].message, type=failures[0].kind)
        failure.text = "\n\n".join(f.text() for f in failures)
    if error:
        element = ET.SubElement(case, "error", message=error.splitlines()[0], type="error")
        element.text = error
    return case


def _time(seconds: float) -> str:
    return f"{max(0.0, seconds):.3f}"
