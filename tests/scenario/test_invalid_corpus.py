"""Golden files: every invalid scenario in invalid/ fails with exactly the messages beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import ScenarioError
from runner.scenario import loader

CORPUS = Path(__file__).parent / "invalid"
CASES = sorted(p.stem for p in CORPUS.glob("*.yaml"))


def test_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", CASES)
def test_invalid_scenario_reports_exact_messages(name: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(CORPUS)
    expected = (CORPUS / f"{name}.expected").read_text(encoding="utf-8").splitlines()
    with pytest.raises(ScenarioError) as caught:
        loader.load(f"{name}.yaml")
    assert [str(p) for p in caught.value.problems] == expected


@pytest.mark.parametrize("name", CASES)
def test_every_message_points_inside_the_file(name: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(CORPUS)
    lines = (CORPUS / f"{name}.yaml").read_text(encoding="utf-8").splitlines() or [""]
    with pytest.raises(ScenarioError) as caught:
        loader.load(f"{name}.yaml")
    for problem in caught.value.problems:
        assert 1 <= problem.line <= len(lines)
        assert 1 <= problem.col <= len(lines[problem.line - 1]) + 1
