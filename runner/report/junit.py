"""JUnit XML for CI (Jenkins, GitLab): one testsuite per scenario, one testcase per job.

Rendered from the JSON report's document, as the HTML page is, so `ye-run report merge` writes from
N shards' reports the file one run writes. Stable across nights, so CI history, "fixed since" and
flaky tracking work: every scenario has the same testcases whatever failed (`job 1`... in
`ye-run.<scenario>`, and `scenario checks`, which holds the failures of the scenario as a whole
(latency limits), the error that ended it, or why it did not run); messages carry no ids (UUIDs and
run ids are cut from them), which go to the testsuite's <properties> (`file`, `run_id`, ..., per job
`job 1.job_id`, `job 1.tenant_id`) and its <system-out> (the failures with their ids). A job's
failures become one <failure> (message: the first; text: all of them); a job the scenario could not
finish is an <error>; an interrupted job or a scenario not run is <skipped>. A flaky scenario
(passed on a rerun) passes, its earlier attempts in properties and <system-out>. A file that failed
to load is a testsuite of its own. The file is valid against the strictest schema in common use
(Ant's JUnit.xsd) and the one Jenkins' xUnit plugin reads (junit-10.xsd).
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runner.engine.results import ScenarioResult
from runner.report import safe
from runner.report.filereporter import FileReporter

_IN_PARENTHESES = re.compile(r" \([0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\)")
_ID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}|\b[0-9]{8}T[0-9]{6}-[0-9a-f]{6}\b")
SKIPPED = {"interrupted": "interrupted before the job finished", "seeded": "seeded only (observe: false)"}


class JUnitReporter(FileReporter):
    """Writes the file when the session finishes, whatever ended it; each file that failed to load is a testsuite."""

    def save(self, outcome) -> None:  # type: ignore[no-untyped-def]
        from runner.report import json_report

        invalid = self.invalid()
        doc = json_report.session_document(outcome, lazy=True, error=self.error(outcome))
        if invalid:
            doc["error"] = None
        write_document(self.path, doc, invalid)


def write(path: Path, results: list[ScenarioResult], error: str | None = None,
          invalid: dict[str, list[str]] | None = None) -> None:
    """The JUnit file of results; `error` (the run could not start or go on: no database, a bug) is a testsuite of
    its own, and so is each invalid scenario file (`invalid`: file -> its problems)."""
    from runner.report import json_report

    now = datetime.now(timezone.utc)
    write_document(path, json_report.document(results, 0, now, now, error), invalid)


def write_document(path: Path, doc: dict[str, Any], invalid: dict[str, list[str]] | None = None) -> None:
    """The JUnit file of a JSON report's document (a run's, or N shards' merged)."""
    now = datetime.now(timezone.utc)
    root = ET.Element("testsuites")
    for scenario in doc["scenarios"]:
        root.append(_suite(scenario, now))
    errors = [("ye-run", "run", doc["error"])] if doc.get("error") else []
    errors += [(file, file, "\n".join(problems)) for file, problems in (invalid or {}).items()]
    for suite_name, case_name, text in errors:
        root.append(_error_suite(suite_name, case_name, text, now))
    for number, suite in enumerate(root):
        suite.set("id", str(number))
    for element in root.iter():
        element.text = safe.xml(element.text)
        for key, value in element.attrib.items():
            element.set(key, safe.xml(value) or "")
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def stable(text: str) -> str:
    """Text without the ids that change every night (UUIDs, run ids), so CI groups one failure across nights."""
    return _ID.sub("<id>", _IN_PARENTHESES.sub("", text))


def _error_suite(suite_name: str, case_name: str, text: str, now: datetime) -> ET.Element:
    case = ET.Element("testcase", name=case_name, classname="ye-run", time=_time(0.0))
    ET.SubElement(case, "error", message=stable(text.splitlines()[0]), type="error").text = text
    return _wrap(suite_name, now, 0.0, [], [case], "")


def _suite(s: dict[str, Any], now: datetime) -> ET.Element:
    started = datetime.fromisoformat(s["started_at"]) if s.get("started_at") else now
    if s.get("invalid"):
        return _error_suite(s["file"], s["file"], s["error"] or "", started)
    properties = _properties(s)
    cases, texts = [], []
    for job in s["jobs"]:
        cases.append(_job_case(s, job))
        texts += [_text(f) for f in job["failures"]]
        properties += [(f"job {job['ordinal']}.job_id", job["job_id"]),
                       (f"job {job['ordinal']}.tenant_id", job["tenant_id"])]
    cases.append(_checks_case(s))
    texts += [_text(f) for f in s["failures"]]
    out = list(s.get("summary") or [])
    out += ["", "failures, with their ids:", *texts] if texts else []
    return _wrap(s["name"], started, s["duration"], properties, cases, "\n".join(out))


def _properties(s: dict[str, Any]) -> list[tuple[str, str]]:
    definition = (s.get("plan") or {}).get("definition", {})
    observation = s.get("observation")
    properties = [("file", s["file"]), ("run_id", s["run"]["run_id"]), ("database", s["database"]["url"]),
                  ("observation", observation["method"] if observation else "none"), ("outcome", s["outcome"]),
                  ("worker", s.get("worker", "")),
                  ("pipeline_definition", f"{definition.get('name', '')} {definition.get('sha256', '')[:12]}")]
    properties += [("description", s["description"])] if s.get("description") else []
    for number, attempt in enumerate(s.get("attempts") or [], 1):
        reason = f": {attempt['failures'][0]}" if attempt["failures"] else ""
        properties.append((f"attempt {number}", f"{attempt['outcome']} (run {attempt['run_id']}){reason}"))
    return properties


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


def _job_case(s: dict[str, Any], job: dict[str, Any]) -> ET.Element:
    name, seconds = f"job {job['ordinal']}", job.get("duration") or 0.0
    if job["outcome"] in ("error", "running"):
        text = s.get("error") or "the scenario ended before this job finished"
        return _case(s, name, seconds, job["failures"], error=text,
                     error_message=f"did not finish: {text.splitlines()[0]}")
    return _case(s, name, seconds, job["failures"], skipped=SKIPPED.get(job["outcome"]))


def _checks_case(s: dict[str, Any]) -> ET.Element:
    """Every night, whatever failed: the scenario's own failures, the error that ended it, or why it did not run."""
    skipped = {"not_run": s.get("note") or "not run",
               "interrupted": "interrupted before the scenario's checks were complete"}.get(s["outcome"])
    return _case(s, "scenario checks", s.get("duration") or 0.0, s["failures"], error=s.get("error"),
                 skipped=skipped)


def _case(s: dict[str, Any], name: str, seconds: float, failures: list[dict[str, Any]],
          error: str | None = None, error_message: str | None = None, skipped: str | None = None) -> ET.Element:
    """A testcase with at most one outcome element (the schemas allow one): an error, else the failures (all of
    them in its text; an error's text keeps them too), else skipped. Messages and texts without ids."""
    case = ET.Element("testcase", name=name, classname=f"ye-run.{s['name']}", time=_time(seconds))
    failed = stable("\n\n".join(_text(f) for f in failures))
    if error:
        element = ET.SubElement(case, "error", message=stable(error_message or error.splitlines()[0]), type="error")
        element.text = stable(f"{error}\n\n{failed}" if failed else error)
    elif failures:
        ET.SubElement(case, "failure", message=stable(_headline(failures[0])), type=failures[0]["kind"]).text = failed
    elif skipped:
        ET.SubElement(case, "skipped", message=stable(skipped))
    return case


def _headline(failure: dict[str, Any]) -> str:
    """As `Failure.headline`: the message, then what it broke."""
    origin = failure.get("origin")
    if not origin:
        return failure["message"]
    return f"{failure['message']} (broke {origin['file']}:{origin['line']}:{origin['col']}: {origin['path']})"


def _text(failure: dict[str, Any]) -> str:
    return _headline(failure) + ("\n" + failure["detail"] if failure.get("detail") else "")


def _time(seconds: float) -> str:
    return f"{max(0.0, seconds):.3f}"
