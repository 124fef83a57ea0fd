"""The built wheel carries its schemas, SQL and images: validating works outside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True)
    (path,) = out.glob("ye_run-*.whl")
    return path


def test_wheel_holds_the_data_files(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("runner/schemas/scenario.schema.json", "runner/schemas/pipeline.schema.json",
                     "runner/pipeline_test/pipeline_test_image9.jpg", "runner/pipeline_test/pipeline_test_image1.png"):
        assert required in names


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding ye-run from the wheel only (its dependencies come from this environment)."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                           text=True).strip())
    (purelib / "test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    return env_dir


def test_installed_wheel_validates_outside_the_repository(installed: Path, tmp_path: Path):
    env_dir = installed
    python = env_dir / "bin" / "python"
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "mine.yaml").write_text("name: mine\nvariants: 2\nsimulate_img_gen: true\n")
    (work / "bad.yaml").write_text("name: bad\nvariants: lots\n")
    ye_run = env_dir / "bin" / "ye-run"
    ok = subprocess.run([str(ye_run), "validate", "mine.yaml"], cwd=work, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    where = subprocess.check_output([str(python), "-c", "import runner; print(runner.__file__)"], cwd=work, text=True)
    assert str(env_dir) in where and str(ROOT) not in where
    bad = subprocess.run([str(ye_run), "validate", "bad.yaml"], cwd=work, capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stdout.strip() == "bad.yaml:2:11: $.variants: expected a whole number, got a string ('lots')"


def test_readme_first_command_runs_the_smoke_scenario_on_the_embedded_default(installed: Path, tmp_path: Path):
    """`pip install .` then `ye-run scenarios/smoke.yaml`: embedded server, in-process pipeline, a pass."""
    scenarios = tmp_path / "checkout" / "scenarios"
    scenarios.mkdir(parents=True)
    (scenarios / "smoke.yaml").write_text((ROOT / "scenarios" / "smoke.yaml").read_text())
    env = {**os.environ, "YE_EMBEDDED_DIR": str(tmp_path / "cache" / "pg"), "CI": "true"}
    env.pop("YE_DATABASE_URL", None)
    run = subprocess.run([str(installed / "bin" / "ye-run"), "scenarios/smoke.yaml", "--asset-dir",
                          str(tmp_path / "assets")], cwd=scenarios.parent, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "smoke: PASSED - 1 job(s): 1 passed, 0 failed; 3 variants" in run.stdout
    assert "on embedded PostgreSQL" in run.stdout and (tmp_path / "cache" / "pg" / "PG_VERSION").is_file()
