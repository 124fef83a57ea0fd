"""`ye-run list` prints every name whole: a table as wide as its longest row, never a name cut to a column."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from runner.cli.main import cli

LONG = "checkout-nightly-with-five-variants-and-a-declared-overlay-retry"


def test_list_prints_long_names_whole(tmp_path: Path):
    (tmp_path / "long.yaml").write_text(f"name: {LONG}\ntags: [nightly-regression-suite]\n")
    (tmp_path / "short.yaml").write_text("name: s\n")
    result = CliRunner().invoke(cli, ["list", str(tmp_path)])
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split()[:2] == ["name", "jobs"]
    assert [row.split()[0] for row in rows] == [LONG, "s"]
    assert rows[0].split()[5:7] == ["nightly-regression-suite", str(tmp_path / "long.yaml")]
    assert header.index("jobs") > len(LONG)  # the columns start after the longest name
