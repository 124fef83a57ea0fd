"""JUnit XML for CI (Jenkins, GitLab): one testsuite per scenario, one testcase per job.

Names are stable across nights (`job 1` in `ye-run.<scenario>`; ids go to the testsuite's
<properties>: `file`, `run_id`, ..., and per job `job 1.job_id`, `job 1.tenant_id`), so CI history,
"fixed since" and flaky tracking work. A job's failures become one <failure> (message: the first;
text: all of them). Failures of the scenario as a whole (latency limits) get a testcase of their
own; an error that ended the scenario (database lost, bad input at run time) is an <error>; an
interrupted job or a scenario not run is <skipped>. The file is valid against the strictest
schema in common use (Ant's JUnit.xsd) and the one Jenkins' xUnit plugin reads (junit-10.xsd).
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from runner.engine.results import JobResult, ScenarioResult
from runner.outcomes import Outcome
from runner.trace import Failure
from runner.report import safe
from runner.report.filereporter import FileReporter
from runner.report.summary import summary


class JUnitReporter(FileReporter):
    """Writes the file when the session finishes, whatever ended it; each file that failed to load is a testsuite."""

    def save(self, outcome) -> None:  # type: ignore[no-untyped-def]
        invalid = self.invalid()
        write(self.path, outcome.results, None if invalid else self.error(outcome), invalid)


def write(path: Path, results: list[ScenarioResult], error: str | None = None,
          invalid: dict[str, list[str]] | None = None) -> None:
    """The JUnit file; `error` (the run could not start or go on: no database, a bug) is a testsuite of its own,
    and so is each invalid scenario file (`invalid`: file -> its problems)."""
    now = datetime.now(timezone.utc)
    root = ET.Element("testsuites")
    for result in results:
        root.append(_suite(result, now))
    errors = [("ye-run", "run", error)] if error else []
    errors += [(file, file, "\n".join(problems)) for file, problems in (invalid or {}).items()]
    for suite_name, case_name, text in errors:
        case = ET.Element("testcase", name=case_name, classname="ye-run", time=_time(0.0))
        ET.SubElement(case, "error", message=text.splitlines()[0], type="error").text = text
        root.append(_wrap(suite_name, now, 0.0, [], [case], ""))
    for number, suite in enumerate(root):
        suite.set("id", str(number))
    for element in root.iter():
        element.text = safe.xml(element.text)
        for key, value in element.attrib.items():
            element.set(key, safe.xml(value) or "")
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _suite(result: ScenarioResult, now: datetime) -> ET.Element:
    definition = result.plan.get("definition", {})
    properties = [("file", result.path), ("run_id", result.run_id), ("database", result.database),
                  ("observation", result.observation.method if result.observation else "none"),
                  ("outcome", result.outcome), ("worker", result.worker),
                  ("pipeline_definition", f"{definition.get('name', '')} {definition.get('sha256', '')[:12]}")]
    cases = []
    for job in result.jobs:
        cases.append(_job_case(result, job))
        properties += [(f"job {job.ordinal}.job_id", job.job_id), (f"job {job.ordinal}.tenant_id",
                                                                   job.seeded.tenant_id)]
    if result.outcome == Outcome.NOT_RUN:
        cases.append(_case(result, "scenario", 0.0, skipped=result.note or "not run"))
    if result.failures:
        cases.append(_case(result, "scenario checks", result.duration, failures=result.failures))
    if result.error:
        cases.append(_case(result, "scenario", result.duration, error=result.error))
    return _wrap(result.name, result.started_at or now, result.duration, properties, cases,
                 "\n".join(summary(result)))


def _wrap(name: str, started: datetime, seconds: float, properties: list[tuple[str, str]],
          cases: list[ET.Element], out: str) -> ET.Element:
    """A testsuite in the order and with the attributes the strictest common schema (Ant's) requires."""
    suite = ET.Element("testsuite", name=name, package="ye-run",
                       timestamp=started.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds"),
                       hostname=socket.gethostname() or "localhost", time=_time(seconds), tests=str(len(cases)))
    for key, child in (("failures", "failure"), ("errors", "error"), ("skipped", "skipped")):
        suite.set(key, str(sum(1 for c in cases if c.find(child) is not None)))
    listed = ET.SubElement(suite, "properties")
    for key, value in properties:
        ET.SubElement(listed, "property", name=key, value=str(value))
    suite.extend(cases)
    ET.SubElement(suite, "system-out").text = out
    ET.SubElement(suite, "system-err").text = ""
    return suite


def _job_case(result: ScenarioResult, job: JobResult) -> ET.Element:
    if job.outcome in (Outcome.ERROR, Outcome.RUNNING):
        text = result.error or "the scenario ended before this job finished"
        return _case(result, f"job {job.ordinal}", job.duration or 0.0, failures=job.failures,
                     error=text, error_message=f"did not finish: {text.splitlines()[0]}")
    skipped = {Outcome.INTERRUPTED: "interrupted before the job finished",
               Outcome.SEEDED: "seeded only (observe: false)"}
    return _case(result, f"job {job.ordinal}", job.duration or 0.0, failures=job.failures,
                 skipped=skipped.get(job.outcome))


def _case(result: ScenarioResult, name: str, seconds: float, failures: list[Failure] | None = None,
          error: str | None = None, error_message: str | None = None, skipped: str | None = None) -> ET.Element:
    """A testcase with at most one outcome element (the schemas allow one): an error, else the failures (all of
    them in its text; an error's text keeps them too), else skipped."""
    case = ET.Element("testcase", name=name, classname=f"ye-run.{result.name}", time=_time(seconds))
    failed = "\n\n".join(f.text() for f in failures or [])
    if error:
        element = ET.SubElement(case, "error", message=error_message or error.splitlines()[0], type="error")
        element.text = f"{error}\n\n{failed}" if failed else error
    elif failures:
        ET.SubElement(case, "failure", message=failures[0].headline(), type=failures[0].kind).text = failed
    elif skipped:
        ET.SubElement(case, "skipped", message=skipped)
    return case


def _time(seconds: float) -> str:
    return f"{max(0.0, seconds):.3f}"
