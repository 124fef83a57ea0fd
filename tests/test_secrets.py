"""A database password is printed nowhere: console, stderr, JSON report, JUnit, dry-run, errors.

Every channel is driven through the CLI with a password no other text contains, in each form
a password can be given: URL userinfo, `?password=`, a libpq keyword DSN, YE_DATABASE_URL
and PGPASSWORD.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from runner.cli.main import cli
from runner.db.connect import Database
from runner.db.url import URL

ROOT = Path(__file__).resolve().parents[1]
YE_RUN = ROOT / ".venv" / "bin" / "ye-run"
TENANT = "ye_secret_test"


@pytest.fixture
def secret() -> str:
    return f"s3cr3t-{uuid.uuid4().hex}"


@pytest.fixture
def seed_only(tmp_path: Path) -> str:
    """A scenario that seeds one job and exits at once (nothing to observe)."""
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\nobserve: false\ntenant: {{id: {TENANT}}}\n", encoding="utf-8")
    return str(path)


def plain(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def with_password(url: URL, form: str, password: str) -> str:
    """`url` carrying `password` as userinfo, as ?password=, or as a libpq keyword DSN."""
    if form == "userinfo":
        return plain(url.set(password=password))
    if form == "query":
        return plain(url.update_query_dict({"password": password}))
    host = url.query.get("host") or url.host
    port = f" port={url.port}" if url.port else ""
    return f"host={host}{port} user={url.username} dbname={url.database} password='{password}'"


def invoke(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), env=env)


def assert_hidden(secret: str, *texts: str, files: tuple[Path, ...] = ()) -> None:
    for text in texts:
        assert secret not in text
    for file in files:
        assert file.exists() and secret not in file.read_text(encoding="utf-8"), file


def assert_one_error_line(stderr: str, starts: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ye-run: error: {starts}"), stderr
    assert "Traceback" not in stderr


# -- without a server -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["userinfo", "query", "keywords"])
def test_dry_run_plan(form: str, secret: str):
    url = with_password(URL.create("postgresql", username="qa", host="db.example", port=5432, database="p"), form,
                        secret)
    result = invoke("run", str(ROOT / "scenarios" / "smoke.yaml"), "--dry-run", "--database-url", url)
    assert result.exit_code == 0, result.output
    assert "db.example" in result.stdout and "***" in result.stdout
    assert_hidden(secret, result.stdout, result.stderr)


def test_dry_run_with_a_url_of_another_database(secret: str):
    result = invoke("run", str(ROOT / "scenarios" / "smoke.yaml"), "--dry-run",
                    "--database-url", f"mysql://qa:{secret}@db.example/p")
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.stderr, "not a PostgreSQL URL: mysql://qa:***@db.example/p")
    assert_hidden(secret, result.output)


@pytest.mark.parametrize("url,starts", [
    ("postgresql://qa:{s}@db.example:abc/p", "bad port 'abc' in postgresql://qa:***@db.example:abc/p"),
    ("postgresql://qa@db.example:abc/p?password={s}", "bad port 'abc'"),
    ("postgresql://qa:{s}@x@db.example/p", "cannot read the database URL postgresql://qa:***@db.example/p: "
                                           "the password contains '@'"),
    ("postgresql://qa:{s}@x/y@db.example/p", "cannot read the database URL"),
    ("host=db.example usr=qa password={s} dbname=p", "not a database URL: host=db.example usr=qa password=***: "
                                                     "unknown keyword 'usr'"),
    ("host=db.example password={s} dbnam=p", "not a database URL: host=db.example password=*** (expected"),
    ("postgresql://qa@db.example/p?Password={s}", "unknown connection parameter 'Password'"),
])
@pytest.mark.parametrize("command", ["run", "db check", "cleanup"])
def test_bad_urls_are_one_line_without_the_password(url: str, starts: str, command: str, secret: str,
                                                      seed_only: str, tmp_path: Path):
    url = url.format(s=secret)
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    args = {"run": ["run", seed_only, "--json", str(report), "--junit", str(junit)],
            "db check": ["db", "check"], "cleanup": ["cleanup", "--tenant", TENANT]}[command]
    result = invoke(*args, "--database-url", url)
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.stderr, starts)
    assert_hidden(secret, result.output, files=(report, junit) if command == "run" else ())


# -- the embedded server, with a role that must give a password ---------------------------------------------------

@pytest.mark.parametrize("form", ["userinfo", "query", "keywords", "PGPASSWORD"])
def test_wrong_password(password_user: URL, form: str, secret: str, seed_only: str,
                        tmp_path: Path):
    env = {"PGPASSWORD": secret} if form == "PGPASSWORD" else {}
    url = plain(password_user) if form == "PGPASSWORD" else with_password(password_user, form, secret)
    check = invoke("db", "check", "--database-url", url, env=env)
    assert check.exit_code == 3, check.output
    assert_one_error_line(check.stderr, "wrong password for user 'pw_user'")
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    run = invoke("run", seed_only, "--database-url", url, "--json", str(report), "--junit", str(junit), env=env)
    assert run.exit_code == 3, run.output
    assert "wrong password for user 'pw_user'" in report.read_text()
    assert_hidden(secret, check.output, run.output, files=(report, junit))


def test_right_password_in_every_form(password_user: URL, secret: str):
    """The forms above fail only because the password is wrong: the right one, in each, connects."""
    for form in ("userinfo", "query", "keywords"):
        result = invoke("db", "check", "--database-url", with_password(password_user, form, "right-one"))
        assert "wrong password" not in result.output and result.exit_code in (0, 3), result.output
        assert result.stdout.startswith("postgresql+psycopg2://pw_user"), result.output
    result = invoke("db", "check", "--database-url", plain(password_user), env={"PGPASSWORD": "right-one"})
    assert result.stdout.startswith("postgresql+psycopg2://pw_user"), result.output


# -- the machine's PostgreSQL (trust auth: the password is sent and ignored) ----------------------------------------

@pytest.fixture
def trusted(external_server: Database) -> URL:
    """The external server's fresh test database (YE_TEST_DATABASE_URL's server, else the run's private one)."""
    return external_server.url


@pytest.mark.parametrize("form", ["userinfo", "query", "keywords"])
def test_db_check(trusted: URL, form: str, secret: str):
    result = invoke("db", "check", "--database-url", with_password(trusted, form, secret))
    assert result.exit_code == 0, result.output
    assert trusted.database in result.stdout and "***" in result.stdout.splitlines()[0]
    assert_hidden(secret, result.stdout, result.stderr)


def test_database_url_from_the_environment(trusted: URL, secret: str):
    result = invoke("db", "check", env={"YE_DATABASE_URL": with_password(trusted, "query", secret)})
    assert result.exit_code == 0 and trusted.database in result.stdout, result.output
    assert_hidden(secret, result.output)


def test_real_run_then_cleanup(trusted: URL, secret: str, seed_only: str, tmp_path: Path):
    """A real `ye-run` process: console, stderr, JSON and JUnit; then `ye-run cleanup`; PGPASSWORD set throughout."""
    env_secret = f"pg-{secret}"
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    env = {**os.environ, "PGPASSWORD": env_secret, "CI": "1"}
    env.pop("YE_DATABASE_URL", None)
    proc = subprocess.run([str(YE_RUN), "run", seed_only, "--database-url", with_password(trusted, "query", secret),
                           "--no-reference-pipeline", "--json", str(report), "--junit", str(junit), "-v"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "s: SEEDED" in proc.stdout and "password=***" in proc.stdout
    assert "password=***" in report.read_text() and "password=***" in junit.read_text()
    for hidden in (secret, env_secret):
        assert_hidden(hidden, proc.stdout, proc.stderr, files=(report, junit))

    cleanup = invoke("cleanup", "--tenant", TENANT, "--database-url", with_password(trusted, "keywords", secret),
                     env={"PGPASSWORD": env_secret})
    assert cleanup.exit_code == 0 and "deleted" in cleanup.stdout and "tenants" in cleanup.stdout, cleanup.output
    assert_hidden(secret, cleanup.output)
    assert_hidden(env_secret, cleanup.output)
