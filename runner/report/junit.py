"""JUnit XML for CI (Jenkins, GitLab): one testsuite per scenario, one testcase per job.

A job's failures become one <failure> (message: the first; text: all of them). Failures of
the scenario as a whole (latency limits) get a testcase of their own; an error that ended the
scenario (database lost, bad input at run time) is an <error>; an interrupted job is <skipped>.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from pathlib import Path

from runner.engine.results import JobResult, ScenarioResult
from runner.trace import Failure
from runner.report import safe
from runner.report.console import summary


def write(path: Path, results: list[ScenarioResult], error: str | None = None) -> None:
    """The JUnit file; `error` (the run could not start or go on: no database, a bug) is a testsuite of its own."""
    root = ET.Element("testsuites", name="ye-run")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    duration = 0.0
    for result in results:
        suite = _suite(result)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
        duration += result.duration
    if error:
        suite = ET.SubElement(root, "testsuite", name="ye-run", tests="1", failures="0", errors="1", time="0.000")
        case = ET.SubElement(suite, "testcase", name="run", classname="ye-run", time="0.000")
        ET.SubElement(case, "error", message=error.splitlines()[0], type="error").text = error
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
    for name, value in (("run_id", result.run_id), ("database", result.database),
                        ("observation", result.observation.method if result.observation else "none"),
                        ("outcome", result.outcome)):
        ET.SubElement(properties, "property", name=name, value=str(value))
    cases = [_job_case(result, job) for job in result.jobs]
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
    name = f"job {job.ordinal} ({job.job_id})"
    case = _case(result, name, job.duration or 0.0, failures=job.failures)
    if job.outcome == "interrupted":
        ET.SubElement(case, "skipped", message="interrupted before the job finished")
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
