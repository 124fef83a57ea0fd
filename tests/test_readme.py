"""The README's two set-up commands are the ones CI and the packaging test exercise."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALL_AND_RUN = "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/ye-run scenarios/smoke.yaml"
TESTS = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest -n 2"


def test_set_up_holds_exactly_the_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"```bash\n(.*?)\n```", section, flags=re.S) == [INSTALL_AND_RUN, TESTS]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python3 -m venv .venv" in ci and ".venv/bin/pip install -q -e '.[test]'" in ci
    assert ci.rstrip().splitlines()[-1] == ".venv/bin/pytest -n 2"


VARYING = re.compile(r"(\d{8}T\d{6}-[0-9a-f]{6}|\d{2}:\d{2}:\d{2}|\d+(?:\.\d+)?(?:ms|s|m)?(?![\w.]))")
"""Run ids, clock times and figures (with their unit, which may change: 290ms, 1.2s): they vary run to run."""


def _shape(line: str) -> str:
    """A console line as a pattern: the words and the columns must match, the figures may not."""
    parts = VARYING.split(" ".join(line.split()))
    return "".join(r"\S+" if i % 2 else re.escape(part) for i, part in enumerate(parts))


def test_the_sample_run_is_what_the_smoke_scenario_prints(db):
    """Every line of the README's sample (but `...`) is printed by `ye-run scenarios/smoke.yaml`, in order."""
    from click.testing import CliRunner

    from runner.cli.main import cli

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sample = readme.split("$ ye-run scenarios/smoke.yaml\n", 1)[1].split("```", 1)[0]
    wanted = [line for line in sample.splitlines() if line.strip() and line.strip() != "..."]
    result = CliRunner().invoke(cli, ["run", str(ROOT / "scenarios" / "smoke.yaml"), "--reference-pipeline",
                                      "--database-url", db.url.render_as_string(hide_password=False)])
    assert result.exit_code == 0, result.output
    printed = [" ".join(line.split()) for line in result.stdout.splitlines()]
    printed = [line.replace(db.display, "embedded PostgreSQL") for line in printed]
    at = 0
    for line in wanted:
        pattern = re.compile(_shape(line))
        found = next((i for i in range(at, len(printed)) if pattern.fullmatch(printed[i])), None)
        assert found is not None, f"README line not printed (in order): {line!r}\n--- printed ---\n{result.stdout}"
        at = found + 1
