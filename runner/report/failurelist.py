"""What the HTML report lists first: every failure of a run as one row (scenario, job, variant, step, a one-line
reason, a link to it), and a failure's detail as lines, the diff's own marked so they can be coloured."""

from __future__ import annotations

from typing import Any

from runner.outcomes import Outcome

DIFF_HEADER = "expected (-) vs observed (+):"
"""The line `engine.messages.diff` opens its diff with; the lines after it are the diff's."""


def reason(message: str) -> str:
    """The failure's what, without the place every message opens with (`scenario › job 1 (id) › step: what`)."""
    line = message.splitlines()[0] if message else ""
    last = line.rfind(" › ")
    colon = line.find(": ", last + 3) if last >= 0 else -1
    return line[colon + 2:] if colon >= 0 else line


def detail_lines(detail: str | None) -> list[tuple[str, str]]:
    """The detail's lines, each with its class: `del` for an expected line the row never wrote, `ins` for an
    observed one nobody expected (each keeps its `-` or `+`, so the colour is never the only sign)."""
    out, in_diff = [], False
    for line in (detail or "").splitlines():
        text = line.strip()
        kind = ("del" if text.startswith("- ") else "ins" if text.startswith("+ ") else "") if in_diff else ""
        out.append((kind, line))
        in_diff = in_diff or text == DIFF_HEADER
    return out


def failures(items: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """A list of failures as the page shows them: with an id (`prefix-fN`), a link target, and detail lines."""
    return [{**f, "id": f"{prefix}-f{k + 1}", "lines": detail_lines(f.get("detail"))} for k, f in enumerate(items)]


def scenario_entries(s: dict[str, Any], anchor: str, shown: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows a scenario gives the list before its jobs': its error, its own failures, or why it is bad."""
    base = {"scenario": s["name"], "anchor": anchor, "outcome": s["outcome"], "job": "", "variant": "", "step": ""}
    rows = []
    if s.get("error"):
        lines = s["error"].splitlines()
        more = f" (and {len(lines) - 1} more line(s))" if len(lines) > 1 else ""
        rows.append({**base, "reason": lines[0] + more, "href": anchor + "-error"})
    rows += [{**base, "step": f.get("step") or "", "reason": reason(f["message"]), "href": f["id"]} for f in shown]
    outcome = Outcome(s["outcome"])
    if not rows and outcome in (Outcome.FAILED, Outcome.INTERRUPTED, Outcome.RUNNING):
        rows.append({**base, "reason": s.get("note") or outcome.value.replace("_", " "), "href": anchor})
    if outcome == Outcome.FLAKY:
        rows.append({**base, "reason": "flaky: failed, then passed on a rerun", "href": anchor})
    return rows


def job_entries(s: dict[str, Any], job: dict[str, Any], anchor: str, shown: list[dict[str, Any]]
                ) -> list[dict[str, Any]]:
    """A job's rows: one per failure, with its variant (or the job row) and its step."""
    rows = []
    for f in shown:
        variant = f"#{f['creation_order']}" if f.get("creation_order") else "job row" if f.get("step") else ""
        rows.append({"scenario": s["name"], "anchor": anchor, "outcome": job["outcome"], "job": job["ordinal"],
                     "variant": variant, "step": f.get("step") or "", "reason": reason(f["message"]),
                     "href": f["id"]})
    return rows
