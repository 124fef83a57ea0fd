"""Trust the verdict: a corpus of hostile inputs, each refused in one line with nothing written.

Every case runs the real CLI (click's CliRunner) against one database of its own on the
embedded server, which holds a baseline run, a `canary` table and a few traps (a volatile
function, a procedure and an operator that delete the canary rows). For each case:

1. the exit code is the documented one (2 bad input, 3 infrastructure; `validate`: 1);
2. stdout and stderr together hold exactly one line (`validate` may add its `N valid, M
   invalid` summary), with no traceback and no control characters, and that line names what
   is at fault: `file:line:col: $.json.path: ...` for a scenario, else the file, URL or option;
3. every table (and sequence) of the database has the same content before and after: a
   refused run writes nothing, not even its own registry row.

A case that hangs is stopped by an alarm and fails; a case that would eat the machine's memory gets
a MemoryError (a bug, exit 70) instead. Passwords of URL cases never appear.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import struct
import uuid
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from psycopg2 import sql

from runner.cli.main import cli
from runner.db.connect import Database
from runner.definition import DEFAULT_TEXT
from tests.conftest import own_database

ROOT = Path(__file__).resolve().parents[1]
JPEG = ROOT / "pipeline_test" / "pipeline_test_image9.jpg"
CASE_TIMEOUT = 20.0
"""Seconds one case may take; a hang (a FIFO opened, a pg_sleep run) fails the case instead."""
CASE_MEMORY = 2 << 30
"""Bytes of address space one case may add to the test process (a matrix or alias bomb stops there)."""
CANARY_ROWS = 5
MARKER = Path(f"/tmp/ye_hostile_pwned_{uuid.uuid4().hex[:10]}")
"""A file only a hostile input that got executed (COPY TO PROGRAM, a YAML python tag) would create."""
DEEPER = r"(?:\.\w+|\[[^\]]*\])*"
"""Further JSON path segments: `.key`, `[3]`, `['odd key']`."""
SUMMARY = re.compile(r"^\d+ valid, \d+ invalid$")
CLICK_USAGE = re.compile(r"^(Usage: (ye-run|cli) |Try '(ye-run|cli) .*' for help\.$)")
"""Click's usage block around a usage error: the standard shape of a CLI's usage message, where the one
error line is click's `Error: ...`."""
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")

TRAPS = f"""
CREATE TABLE canary (id int PRIMARY KEY, note text NOT NULL);
INSERT INTO canary SELECT n, 'canary ' || n FROM generate_series(1, {CANARY_ROWS}) n;
CREATE FUNCTION wipe() RETURNS int LANGUAGE sql VOLATILE AS 'delete from canary returning 1';
CREATE FUNCTION wipe_eq(int, int) RETURNS bool LANGUAGE sql VOLATILE AS 'delete from canary returning true';
CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = wipe_eq);
CREATE PROCEDURE p() LANGUAGE sql AS 'delete from canary';
INSERT INTO tenants (tenant_id, name) VALUES ('acme_production', 'ACME (a customer)');
"""

BASELINE_TABLES = ("tenants", "jobs", "job_inputs", "jobs_variants", "image_assets", "canary", "ye_run_runs",
                   "ye_run_seeded", "ye_run_history")
BASELINE = """\
name: hostile-baseline
tenant: {id: ye_hostile_test, isolate: true}
simulate_img_gen: true
cleanup: never
"""


# --- the database ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    database: Database
    url: str


@pytest.fixture(scope="module")
def target(embedded_server: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A database of this module's own: reference schema, traps, and one passing baseline run."""
    with own_database(embedded_server, TRAPS, "ye_hostile") as database:
        url = database.url.render_as_string(hide_password=False)
        baseline = tmp_path_factory.mktemp("hostile-baseline") / "baseline.yaml"
        baseline.write_text(BASELINE, encoding="utf-8")
        result = CliRunner().invoke(cli, ["run", str(baseline), "--database-url", url, "--reference-pipeline"])
        _baseline_seeded(database, result)
        yield Target(database, url)


def _baseline_seeded(database: Database, result) -> None:  # type: ignore[no-untyped-def]
    """The baseline must have seeded. Its verdict is not what this module tests: a baseline that does
    not pass is reported as a warning, so work on the pipeline cannot hide the whole corpus."""
    if result.exit_code:
        warnings.warn(f"the baseline scenario did not pass (exit {result.exit_code}):\n{result.output}")
    state = snapshot(database)
    empty = [t for t in BASELINE_TABLES if state[f"table {t}"].startswith("0 row(s)")]
    assert not empty, f"the baseline seeded nothing into {empty}:\n{result.output}"


def snapshot(database: Database) -> dict[str, str]:
    """Row count and md5 of every public table's rows, and every public sequence's last value."""
    state: dict[str, str] = {}
    with contextlib.closing(database.connect("ye-run hostile snapshot", autocommit=True)) as conn, \
            conn.cursor() as cur:
        cur.execute("select tablename from pg_tables where schemaname = 'public' order by 1")
        for (table,) in cur.fetchall():
            cur.execute(sql.SQL("select count(*), md5(coalesce(string_agg(t::text, ',' order by t::text), '')) "
                                "from {} t").format(sql.Identifier(table)))
            rows, digest = cur.fetchone()
            state[f"table {table}"] = f"{rows} row(s), md5 {digest}"
        cur.execute("select sequencename, last_value from pg_sequences where schemaname = 'public'")
        for sequence, last in cur.fetchall():
            state[f"sequence {sequence}"] = f"last_value {last}"
    return state


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [f"{key} changed: {before.get(key, 'absent')} -> {after.get(key, 'absent')}"
            for key in sorted(before.keys() | after.keys()) if before.get(key) != after.get(key)]


# --- running one case --------------------------------------------------------------------------


class Hung(BaseException):
    """Raised by the alarm; a BaseException so neither ye-run nor CliRunner swallows it."""


@contextlib.contextmanager
def alarm(seconds: float) -> Iterator[None]:
    def ring(signum: int, frame: object) -> None:
        raise Hung(f"no answer within {seconds:.0f}s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def memory_limit(extra: int) -> Iterator[None]:
    """The process may map `extra` more bytes while inside; past that, allocations fail with MemoryError."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    status = Path("/proc/self/status").read_text(encoding="ascii").splitlines()
    mapped = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    limit = mapped + extra if hard == resource.RLIM_INFINITY else min(mapped + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@dataclass(frozen=True)
class Ctx:
    """What an argv builder may use: the case's directory, its main file and the database URL."""

    tmp: Path
    url: str
    database: Database

    @property
    def file(self) -> str:
        return str(self.tmp / "case.yaml")

    def run(self, *extra: str) -> list[str]:
        return ["run", self.file, "--database-url", self.url, *extra]


Files = Callable[[Path], None]
Argv = Callable[[Ctx], list[str]]


@dataclass(frozen=True)
class Case:
    id: str
    argv: Argv
    exit_code: int
    line: str
    """Regex the one line must match; `{file}` `{tmp}` `{line}` are replaced (escaped) before use."""
    files: Files = lambda tmp: None
    where: str | None = None
    """Text of the scenario file: the line must point at the first line holding it."""
    secrets: tuple[str, ...] = ()
    """Strings (passwords) that must not appear anywhere in the output."""
    summary: bool = False
    """`validate`: its `N valid, M invalid` line on stderr is allowed besides the one line."""


def pattern(case: Case, ctx: Ctx) -> str:
    text = case.line
    line = r"\d+"
    if case.where is not None:
        content = (ctx.tmp / "case.yaml").read_bytes().decode("utf-8", "replace")
        line = str(next(i for i, text_line in enumerate(content.splitlines(), 1) if case.where in text_line))
    return (text.replace("{file}", re.escape(ctx.file)).replace("{tmp}", re.escape(str(ctx.tmp)))
            .replace("{line}", line))


def verdict(case: Case, ctx: Ctx, stdout: str, stderr: str, exit_code: int | None) -> list[str]:
    """Everything wrong with one case's output (empty when it behaved)."""
    problems = []
    output = stdout + stderr
    if exit_code != case.exit_code:
        problems.append(f"exit code {exit_code}, expected {case.exit_code}")
    if "Traceback" in output:
        problems.append("the output holds a traceback")
    lines = [line for line in stdout.splitlines() if line.strip()]
    lines += [line for line in stderr.splitlines() if line.strip() and not (case.summary and SUMMARY.match(line))
              and not CLICK_USAGE.match(line)]
    if len(lines) != 1:
        problems.append(f"{len(lines)} line(s) of output, expected exactly one")
    if any(CONTROL.search(line) for line in lines):
        problems.append("the output holds a control character")
    if not any(re.search(pattern(case, ctx), line.strip()) for line in lines):
        problems.append(f"no line matches {pattern(case, ctx)!r}")
    for secret in case.secrets:
        if secret in output:
            problems.append(f"the password {secret!r} appears in the output")
    return problems


# --- scenario texts ----------------------------------------------------------------------------

BASE = {
    "name": "hostile",
    "tenant": "{id: ye_hostile_test, isolate: true}",
    "simulate_img_gen": "true",
    "cleanup": "always",
    "timeouts": "{step: 2s, stall: 2s, job: 3s}",
}


def doc(*extra: str, **keys: str | None) -> str:
    """A valid scenario with top-level `keys` replaced (None removes one) and `extra` lines appended."""
    merged = {**BASE, **keys}
    return "\n".join([f"{k}: {v}" for k, v in merged.items() if v is not None] + list(extra)) + "\n"


def sql_doc(query: str) -> str:
    body = [f"        {line}" for line in query.splitlines()]
    return doc("expect:", "  sql:", "    - name: hostile check", "      rows: 1", "      query: |-", *body)


def write(name: str, content: str | bytes) -> Files:
    def make(tmp: Path) -> None:
        data = content.encode("utf-8") if isinstance(content, str) else content
        (tmp / name).write_bytes(data)
    return make


def many(*makers: Files) -> Files:
    def make(tmp: Path) -> None:
        for maker in makers:
            maker(tmp)
    return make


def located(json_path: str, message: str = "", file: str = "{file}") -> str:
    """`file:line:col: $.path...: message`: the JSON path at or below `json_path`; `message` a regex after it."""
    return rf"^{file}:{{line}}:\d+: {re.escape(json_path)}{DEEPER}: .*{message}"


def run_case(id: str, text: str | bytes, json_path: str, message: str = "", where: str | None = None,
             exit_code: int = 2) -> Case:
    return Case(id, lambda c: c.run(), exit_code, located(json_path, message), write("case.yaml", text), where)


def validate_case(id: str, text: str | bytes, json_path: str, message: str = "", where: str | None = None) -> Case:
    return Case(id, lambda c: ["validate", c.file], 1, located(json_path, message), write("case.yaml", text),
                where, summary=True)


def png(width: int, height: int) -> bytes:
    """A minimal PNG: signature, IHDR claiming width x height, IEND (no pixel data at all)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def pillow_image(name: str, fmt: str) -> Files:
    def make(tmp: Path) -> None:
        from PIL import Image

        Image.new("RGB", (16, 12), (200, 30, 30)).save(tmp / name, fmt)
    return make


def fifo(name: str) -> Files:
    return lambda tmp: os.mkfifo(tmp / name)


def directory(name: str) -> Files:
    return lambda tmp: (tmp / name).mkdir()


LAUGHS = "\n".join(["lol0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                   + [f"lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)])


# --- the corpus --------------------------------------------------------------------------------

YAML_CASES = [
    run_case("yaml-broken-syntax", "name: x\nvariants: [1, 2\ncleanup: always\n", "$", "invalid YAML"),
    run_case("yaml-unclosed-quote", 'name: "x\nvariants: 2\n', "$", "invalid YAML"),
    run_case("yaml-tab-indentation", "name: x\ntenant:\n\tid: ye_x_test\n", "$", "invalid YAML", where="\tid"),
    run_case("yaml-duplicate-keys", doc("variants: 2", "variants: 3"), "$.variants", "duplicate key",
             where="variants: 3"),
    run_case("yaml-duplicate-nested-keys", doc(tenant="{id: ye_a_test, id: ye_b_test}"), "$.tenant.id",
             "duplicate key", where="tenant:"),
    run_case("yaml-two-documents", doc() + "---\nname: second\n", "$", "second YAML document", where="---"),
    run_case("yaml-billion-laughs", doc(LAUGHS), "$", "more than 50000 nodes"),
    run_case("yaml-recursive-alias", doc("fixtures: &f [*f]"), "$.fixtures", "recursive alias"),
    run_case("yaml-recursive-merge", doc("expect: &e {<<: *e}"), "$.expect", ""),
    run_case("yaml-deep-nesting-50", doc("expect: " + "[" * 50 + "]" * 50), "$", "deeper than 40"),
    run_case("yaml-deep-block-nesting-50",
             doc("expect:\n" + "".join(f"{'  ' * (i + 1)}k{i}:\n" for i in range(50)) + "  " * 51 + "x: 1"),
             "$", "deeper than 40"),
    run_case("yaml-2mb-comment", doc("# " + "a" * 2_000_000), "$", "larger than"),
    run_case("yaml-2mb-string", doc(description='"' + "b" * 2_000_000 + '"'), "$", "larger than"),
    run_case("yaml-not-utf8", b"name: caf\xe9\nvariants: 2\n", "$", "not UTF-8", where="name"),
    run_case("yaml-utf16", "name: x\n".encode("utf-16"), "$", ""),
    run_case("yaml-empty-file", "", "$", "empty"),
    run_case("yaml-only-comments", "# nothing here\n# at all\n", "$", "empty"),
    run_case("yaml-top-level-list", "- name: x\n- variants: 2\n", "$", ""),
    run_case("yaml-top-level-scalar", "just a string\n", "$", ""),
    Case("yaml-fifo", lambda c: c.run(), 2, located("$", "regular file"), fifo("case.yaml")),
    Case("yaml-dev-zero", lambda c: ["run", "/dev/zero", "--database-url", c.url], 2,
         located("$", "regular file", file="/dev/zero")),
    Case("yaml-directory-without-yaml", lambda c: ["run", str(c.tmp / "empty"), "--database-url", c.url], 2,
         r"^ye-run: error: {tmp}/empty: .*no \*\.yaml", directory("empty")),
    Case("yaml-missing-file", lambda c: ["run", str(c.tmp / "nope.yaml"), "--database-url", c.url], 2,
         r"^ye-run: error: {tmp}/nope\.yaml: no such file"),
    run_case("yaml-python-object-tag", doc(f'variants: !!python/object/apply:os.system ["touch {MARKER}"]'),
             "$.variants", "unsupported YAML tag", where="variants"),
    run_case("yaml-python-object-new-tag", doc("fixtures: !!python/object/new:os.system [\"true\"]"), "$.fixtures",
             "unsupported YAML tag", where="fixtures"),
    run_case("yaml-python-object", doc(tenant="!!python/object:runner.errors.Problem {file: x}"), "$.tenant",
             "unsupported YAML tag", where="tenant:"),
    run_case("yaml-python-name-tag", doc(name="!!python/name:os.system x"), "$.name", "unsupported YAML tag",
             where="name:"),
    run_case("yaml-binary-tag", doc(description="!!binary aGVsbG8gd29ybGQ="), "$.description",
             "unsupported YAML tag", where="description"),
    run_case("yaml-custom-tag", doc(name="!env HOME"), "$.name", "unsupported YAML tag", where="name:"),
    run_case("yaml-set-tag", doc(tags="!!set {a, b}"), "$.tags", "unsupported YAML tag", where="tags"),
    run_case("yaml-complex-key", doc("? [a, b]\n: c"), "$", "keys must be plain strings", where="? [a"),
    run_case("yaml-nan-variants", doc("variants: .nan"), "$.variants", "finite", where="variants"),
    run_case("yaml-merge-of-scalar", doc("expect: {<<: 5}"), "$.expect", "merge key", where="expect"),
    Case("validate-billion-laughs", lambda c: ["validate", c.file], 1, located("$", "more than 50000 nodes"),
         write("case.yaml", doc(LAUGHS)), summary=True),
    Case("validate-fifo", lambda c: ["validate", c.file], 1, located("$", "regular file"), fifo("case.yaml"),
         summary=True),
    Case("validate-dev-zero", lambda c: ["validate", "/dev/zero"], 1, located("$", "regular file", file="/dev/zero"),
         summary=True),
]

SCHEMA_CASES = [
    run_case("schema-unknown-key", doc("variantz: 3"), "$.variantz", "did you mean 'variants'", where="variantz"),
    run_case("schema-unknown-nested-key", doc(tenant="{id: ye_x_test, isloate: true}"), "$.tenant.isloate",
             "did you mean 'isolate'", where="tenant:"),
    run_case("schema-wrong-type-variants", doc("variants: [3]"), "$.variants", "", where="variants"),
    run_case("schema-wrong-type-tenant", doc(tenant="ye_x_test"), "$.tenant", "", where="tenant:"),
    run_case("schema-wrong-type-bool", doc(simulate_img_gen="yes please"), "$.simulate_img_gen", "",
             where="simulate_img_gen"),
    run_case("schema-step-typo", doc("expect: {steps: [vlm_analyse]}"), "$.expect.steps[0]",
             "did you mean 'vlm_analyze'", where="expect"),
    run_case("schema-stop-after-typo", doc("expect: {stop_after: planer}"), "$.expect.stop_after",
             "did you mean 'planner'", where="expect"),
    run_case("schema-mode-typo", doc("mode: onse"), "$.mode", "", where="mode"),
    run_case("schema-negative-variants", doc("variants: -1"), "$.variants", "", where="variants"),
    run_case("schema-101-variants", doc("variants: 101"), "$.variants", "100", where="variants"),
    run_case("schema-duration-words", doc(timeouts="{step: 5 minutes}"), "$.timeouts.step", "",
             where="timeouts"),
    run_case("schema-duration-negative", doc(timeouts="{step: -5m}"), "$.timeouts.step", "", where="timeouts"),
    run_case("schema-duration-overflow", doc(timeouts="{job: 99999999999999999999h}"), "$.timeouts.job", "",
             where="timeouts"),
    run_case("schema-duration-trailing-newline", doc(timeouts='{stall: "30s\\n"}'), "$.timeouts.stall", "",
             where="timeouts"),
    run_case("schema-duration-bare-number", doc(timeouts="{step: 30}"), "$.timeouts.step", "", where="timeouts"),
    run_case("schema-tenant-sql-injection", doc(tenant="{id: \"x'; drop table jobs;--\"}"), "$.tenant.id", "",
             where="tenant:"),
    run_case("schema-tenant-trailing-newline", doc(tenant='{id: "ye_x_test\\n"}'), "$.tenant.id", "",
             where="tenant:"),
    run_case("schema-tenant-too-long", doc(tenant="{id: ye_" + "a" * 61 + "}"), "$.tenant.id", "",
             where="tenant:"),
    run_case("schema-isolated-tenant-60", doc(tenant="{id: ye_" + "b" * 57 + ", isolate: true}"), "$.tenant.id",
             "isolate", where="tenant:"),
    run_case("schema-nul-in-desc-kor", doc('job_inputs: {desc_kor: "a\\0b"}'), "$.job_inputs.desc_kor", "NUL",
             where="job_inputs"),
    run_case("schema-nul-in-tenant-name", doc(tenant='{id: ye_x_test, name: "a\\0b"}'), "$.tenant.name", "NUL",
             where="tenant:"),
    run_case("schema-ansi-in-name", doc(name='"a\\x01b\\e[31m"'), "$.name", "control character", where="name:"),
    run_case("schema-c1-control-in-description", doc(description='"ok\\x9b2J"'), "$.description",
             "control character", where="description"),
    run_case("schema-uppercase-tag", doc(tags="[Smoke]"), "$.tags[0]", "", where="tags"),
    run_case("schema-duplicate-tag", doc(tags="[nightly, nightly]"), "$.tags", "", where="tags"),
    run_case("schema-extra-column-injection", doc('job_inputs: {extra: {"desc_kor) values (1); --": x}}'),
             "$.job_inputs.extra", "", where="job_inputs"),
    run_case("schema-fixture-table-injection",
             doc("fixtures:", '  - table: "ad_copies; delete from canary"', "    rows: [{copy_text: x}]"),
             "$.fixtures[0].table", "", where="table:"),
    run_case("schema-fixture-column-injection",
             doc("fixtures:", "  - table: ad_copies",
                 '    rows: [{job_id: "${job.id}", "copy_text) values (1); delete from canary; --": x}]'),
             "$.fixtures[0].rows[0]", "", where="rows:"),
    run_case("schema-unknown-placeholder",
             doc("fixtures:", "  - table: ad_copies", '    rows: [{job_id: "${job.idd}", copy_text: x}]'),
             "$.fixtures[0].rows[0].job_id", "placeholder", where="rows:"),
    run_case("schema-undeclared-fail-variant", doc(simulate_img_gen="{fail_variants: [2]}"),
             "$.simulate_img_gen.fail_variants", "", where="simulate_img_gen"),
    Case("schema-extends-cycle", lambda c: c.run(), 2, located("$.extends", "cycle", file="{tmp}/other.yaml"),
         many(write("case.yaml", doc("extends: other.yaml")), write("other.yaml", "extends: case.yaml\n"))),
    run_case("schema-extends-self", doc("extends: case.yaml"), "$.extends", "cycle", where="extends"),
    run_case("schema-extends-missing", doc("extends: _nowhere.yaml"), "$.extends", "_nowhere.yaml",
             where="extends"),
    run_case("schema-extends-dev-zero", doc("extends: /dev/zero"), "$.extends", "/dev/zero", where="extends"),
    Case("schema-extends-fifo", lambda c: c.run(), 2, located("$.extends", "_pipe.yaml"),
         many(write("case.yaml", doc("extends: _pipe.yaml")), fifo("_pipe.yaml")), where="extends"),
    Case("schema-extends-broken-base", lambda c: c.run(), 2, located("$.variants", "", file="{tmp}/_base.yaml"),
         many(write("case.yaml", doc("extends: _base.yaml")), write("_base.yaml", "variants: lots\n"))),
    validate_case("validate-ansi-in-name", doc(name='"a\\x01b\\e[31m"'), "$.name", "control character",
                  where="name:"),
    validate_case("validate-unknown-key", doc("variantz: 3"), "$.variantz", "did you mean 'variants'",
                  where="variantz"),
]

TENANT_CASES = [
    run_case("tenant-customer-acme-corp", doc(tenant="{id: acme_corp}"), "$.tenant.id", "acme_corp",
             where="tenant:"),
    run_case("tenant-substring-latest-corp", doc(tenant="{id: latest_corp}"), "$.tenant.id", "latest_corp",
             where="tenant:"),
    run_case("tenant-substring-protestant", doc(tenant="{id: protestant_x}"), "$.tenant.id", "protestant_x",
             where="tenant:"),
    run_case("tenant-substring-contest", doc(tenant="{id: contest}"), "$.tenant.id", "contest",
             where="tenant:"),
    run_case("tenant-fixture-tenants-row",
             doc("fixtures:", "  - table: tenants", "    rows: [{tenant_id: acme_production, name: x}]"),
             "$.fixtures[0].rows[0].tenant_id", "acme_production", where="rows:"),
    run_case("tenant-fixture-other-customer-asset",
             doc("fixtures:", "  - table: image_assets",
                 '    rows: [{image_type: generated, image_url: "file:///x.png", tenant_id: acme_corp, '
                 'job_id: "${job.id}"}]'),
             "$.fixtures[0].rows[0].tenant_id", "acme_corp", where="rows:"),
]

IMAGE_CASES = [
    run_case("image-missing", doc("images: [missing-1.png, sub/missing-2.jpg]"), "$.images",
             "이미지 파일을 찾을 수 없습니다.*missing-1\\.png.*missing-2\\.jpg", where="images"),
    Case("image-text-file-named-png", lambda c: c.run(), 2, located("$.images[0]", "fake\\.png"),
         many(write("case.yaml", doc("images: [fake.png]")), write("fake.png", "this is not a PNG\n")),
         where="images"),
    Case("image-truncated-jpeg", lambda c: c.run(), 2, located("$.images[0]", "cut\\.jpg"),
         many(write("case.yaml", doc("images: [cut.jpg]")), write("cut.jpg", JPEG.read_bytes()[:100])),
         where="images"),
    Case("image-png-header-20000x10000", lambda c: c.run(), 2, located("$.images[0]", "bomb\\.png"),
         many(write("case.yaml", doc("images: [bomb.png]")), write("bomb.png", png(20000, 10000))),
         where="images"),
    Case("image-png-header-only", lambda c: c.run(), 2, located("$.images[0]", "empty\\.png"),
         many(write("case.yaml", doc("images: [empty.png]")), write("empty.png", png(64, 64))), where="images"),
    Case("image-is-a-directory", lambda c: c.run(), 2, located("$.images", "이미지 파일을 찾을 수 없습니다.*pics"),
         many(write("case.yaml", doc("images: [pics]")), directory("pics")), where="images"),
    run_case("image-is-dev-zero", doc("images: [/dev/zero]"), "$.images", "이미지 파일을 찾을 수 없습니다.*/dev/zero",
             where="images"),
    Case("image-gif-is-fine", lambda c: ["validate", c.file], 0, r"^{file}: ok$",
         many(write("case.yaml", doc("images: [ok.gif]")), pillow_image("ok.gif", "GIF")), summary=True),
    Case("image-bmp-is-fine", lambda c: ["validate", c.file], 0, r"^{file}: ok$",
         many(write("case.yaml", doc("images: [ok.bmp]")), pillow_image("ok.bmp", "BMP")), summary=True),
]

SQL_QUERIES = {
    "sql-dollar-quote-commit-delete": "select $a$'$a$ ; commit; delete from canary --'",
    "sql-e-string-commit-delete": "select E'\\''; commit; delete from canary --'",
    "sql-copy-to-program": f"copy (select 1) to program 'touch {MARKER}'",
    "sql-terminate-backends": "select pg_terminate_backend(pid) from pg_stat_activity",
    "sql-advisory-lock": "select pg_advisory_lock(4242)",
    "sql-sleep": "select pg_sleep(100)",
    "sql-set-config": "select set_config('x.y', 'z', false)",
    "sql-nextval": "select nextval('ye_run_history_id_seq')",
    "sql-delete": "delete from jobs",
    "sql-writable-cte": "with gone as (delete from canary returning 1) select count(*) from gone",
    "sql-for-update": "select * from jobs for update",
    "sql-select-into": "select 1 into t",
    "sql-do-block": "do $$ begin delete from canary; end $$",
    "sql-call-procedure": "call p()",
    "sql-set-role": "set role postgres",
    "sql-listen": "listen x",
    "sql-two-statements": "select 1; select 2",
    "sql-comment-only": "-- nothing to run\n/* at all */",
    "sql-unknown-parameter": "select count(*) from jobs where tenant_id = :tenant",
    "sql-volatile-user-function": "select wipe()",
    "sql-volatile-function-in-subquery": "select (select wipe()) = 1",
    "sql-volatile-function-in-values": "values (wipe())",
    "sql-volatile-operator": "select 1 === 1",
    "sql-explain-analyze-delete": "explain analyze delete from canary",
    "sql-read-server-file": "select pg_read_file('/etc/passwd')",
    "sql-txid-current": "select txid_current()",
    "sql-lo-import": "select lo_import('/etc/hostname')",
}
SQL_CASES = [run_case(id, sql_doc(query), "$.expect.sql[0].query") for id, query in SQL_QUERIES.items()] + [
    run_case("sql-empty-query", doc('expect: {sql: [{name: empty, query: "", rows: 1}]}'), "$.expect.sql[0].query",
             where="expect"),
    run_case("sql-unknown-column", sql_doc("select no_such_column from jobs where job_id = :job_id"),
             "$.expect.sql[0].query", "no_such_column"),
    run_case("sql-misspelt-table", sql_doc("select count(*) from jobs_variant"), "$.expect.sql[0].query",
             "jobs_variant"),
]

PASSWORD = "Hunter2-Zebra9"
URL_SCENARIO = write("case.yaml", doc())


def url_case(id: str, database_url: str | Callable[[Ctx], str], exit_code: int, message: str,
             secrets: tuple[str, ...] = (PASSWORD,), dry_run: bool = False) -> Case:
    def argv(c: Ctx) -> list[str]:
        value = database_url(c) if callable(database_url) else database_url
        return ["run", c.file, "--database-url", value, *(["--dry-run"] if dry_run else [])]
    return Case(id, argv, exit_code, rf"^ye-run: error: .*{message}", URL_SCENARIO, secrets=secrets)


def missing_database(c: Ctx) -> str:
    return c.database.url.set(database="ye_hostile_no_such_db", password=PASSWORD).render_as_string(
        hide_password=False)


URL_CASES = [
    url_case("url-bad-port", f"postgresql://qa:{PASSWORD}@127.0.0.1:abc/db", 2, "abc"),
    url_case("url-port-out-of-range", f"postgresql://qa:{PASSWORD}@127.0.0.1:70000/db", 2, "70000"),
    url_case("url-unencoded-at-in-password", "postgresql://qa:Hunter2@Zebra9@127.0.0.1:5432/db", 2,
             "percent-encode", secrets=("Hunter2", "Zebra9")),
    url_case("url-mysql", f"mysql://qa:{PASSWORD}@db.example/shop", 2, "PostgreSQL"),
    url_case("url-asyncpg-driver", f"postgresql+asyncpg://qa:{PASSWORD}@127.0.0.1:5432/db", 2, "asyncpg"),
    url_case("url-keyword-dsn-typo", f"host=127.0.0.1 port=1 dbnme=shop user=qa password={PASSWORD}", 2, "dbnme"),
    url_case("url-keyword-dsn-password-typo", f"host=127.0.0.1 port=1 dbname=shop user=qa pasword={PASSWORD}", 2,
             "pasword"),
    url_case("url-query-password-typo", f"postgresql://qa@127.0.0.1:1/shop?pasword={PASSWORD}", 2, "pasword"),
    url_case("url-unreachable", f"postgresql://qa:{PASSWORD}@127.0.0.1:1/shop", 3, "127\\.0\\.0\\.1:1"),
    url_case("url-newline-in-database", f"postgresql://qa:{PASSWORD}@127.0.0.1:1/shop\nFORGED LINE", 3, ""),
    url_case("url-database-does-not-exist", missing_database, 3, "ye_hostile_no_such_db"),
    url_case("url-dry-run-mysql", f"mysql://qa:{PASSWORD}@db.example/shop", 2, "PostgreSQL", dry_run=True),
    Case("url-db-check-mysql", lambda c: ["db", "check", "--database-url", f"mysql://qa:{PASSWORD}@db.example/x"],
         2, r"^ye-run: error: .*PostgreSQL", secrets=(PASSWORD,)),
]


FORGED = ('{"run_id": "20260101T000000-abcdef", "scenario": "forged", "tenant_id": "ye_forged_test", '
          '"rows": {"%s": [%s]}}')
"""A hand-made report: a test tenant, and rows no run of it seeded."""


def cleanup_report(id: str, report: str | bytes | Files, line: str) -> Case:
    """`ye-run cleanup --report <tmp>/r.json` with `report` as that file (its text, or a maker)."""
    files = report if callable(report) else write("r.json", report)
    return Case(id, lambda c: ["cleanup", "--report", str(c.tmp / "r.json"), "--database-url", c.url], 2, line, files)


def cleanup(id: str, *options: str, line: str) -> Case:
    return Case(id, lambda c: ["cleanup", *options, "--database-url", c.url], 2, line)


CLI_CASES = [
    Case("cli-run-without-scenario", lambda c: ["run", "--database-url", c.url], 2, r"SCENARIO"),
    Case("cli-unknown-option", lambda c: ["run", c.file, "--databse-url", c.url], 2, r"--databse-url",
         URL_SCENARIO),
    Case("cli-unknown-command", lambda c: ["rnu"], 2, r"rnu"),
    Case("cli-validate-without-path", lambda c: ["validate"], 2, r"PATH"),
    cleanup("cli-cleanup-run-and-tenant", "--run", "x", "--tenant", "ye_x_test",
            line=r"^ye-run: error: .*--run.*--tenant"),
    cleanup_report("cli-cleanup-report-malformed", '{"scenarios": [}', r"^ye-run: error: {tmp}/r\.json: "),
    cleanup_report("cli-cleanup-report-wrong-shape", '{"scenarios": [{"run": {"record": [1, 2]}}]}',
                   r"^ye-run: error: {tmp}/r\.json: "),
    cleanup_report("cli-cleanup-report-not-utf8", b'{"run_id": "\xff\xfe"}', r"^ye-run: error: {tmp}/r\.json: "),
    Case("cli-cleanup-report-dev-zero", lambda c: ["cleanup", "--report", "/dev/zero", "--database-url", c.url], 2,
         r"^ye-run: error: /dev/zero: "),
    cleanup_report("cli-cleanup-report-fifo", fifo("r.json"), r"^ye-run: error: {tmp}/r\.json: "),
    cleanup_report("cli-cleanup-report-customer-tenant",
                   '{"run_id": "r", "scenario": "s", "tenant_id": "acme_corp", "rows": {"jobs": []}}',
                   r"^ye-run: error: .*acme_corp"),
    # with a run registry, a report only names a run: one the registry does not know proves nothing
    cleanup_report("cli-cleanup-report-forged-canary-rows", FORGED % ("canary", "[1], [2]"),
                   r"^ye-run: error: .*not in this database's run registry"),
    cleanup_report("cli-cleanup-report-forged-stores-row",
                   FORGED % ("stores", '["00000000-0000-4000-8000-000000000001"]'),
                   r"^ye-run: error: .*not in this database's run registry"),
    cleanup("cli-cleanup-run-nope", "--run", "nope", line=r"^ye-run: error: .*'nope'"),
    cleanup("cli-cleanup-tenant-acme-corp", "--tenant", "acme_corp", line=r"^ye-run: error: .*acme_corp"),
    cleanup("cli-cleanup-tenant-latest-corp", "--tenant", "latest_corp", line=r"^ye-run: error: .*latest_corp"),
    Case("cli-asset-dir-under-a-file", lambda c: c.run("--asset-dir", str(c.tmp / "blocker" / "assets")), 2,
         r"--asset-dir", many(URL_SCENARIO, write("blocker", "a regular file\n"))),
    Case("cli-observe-bogus", lambda c: c.run("--observe", "bogus"), 2, r"--observe", URL_SCENARIO),
    Case("cli-tenant-pattern-bad-regex", lambda c: c.run("--tenant-pattern", "("), 2, r"--tenant-pattern",
         URL_SCENARIO),
    Case("cli-junit-is-a-directory", lambda c: c.run("--junit", str(c.tmp)), 2, r"--junit", URL_SCENARIO),
    Case("cli-variant-channel-injection", lambda c: c.run("--variant-channel", 'x"; drop table canary; --'), 3,
         r"x\"; drop table canary; --", URL_SCENARIO),
]


def definition_case(id: str, definition: str, json_path: str, message: str) -> Case:
    """`run` with a hostile `--pipeline-file`: refused at its line before anything is seeded."""
    return Case(id, lambda c: c.run("--pipeline-file", str(c.tmp / "d.yaml")), 2,
                located(json_path, message, file=r"{tmp}/d\.yaml"), many(URL_SCENARIO, write("d.yaml", definition)))


OVERLAY_STARTS_OVER = DEFAULT_TEXT.replace("retry_to: {step: planner, status: done}", "retry_to: {step: user_img_input}")

SEED_ROW_TYPO = DEFAULT_TEXT.replace('ad_copy_eng: "${scenario.ad_copy}"', 'ad_copy_english: "${scenario.ad_copy}"')
"""The built-in definition with a seed-row column the reference table does not have."""

DEFINITION_CASES = [
    definition_case("definition-retry-to-running", "variant_steps: [a, b, {name: c, retry_to: {step: b, status: "
                    "running}}]\n", "$.variant_steps[2].retry_to.status", "nothing picks up a row left 'running'"),
    definition_case("definition-retry-to-seed-queued", "variant_steps: [a, b, {name: c, retry_to: {step: a, status: "
                    "queued}}]\n", "$.variant_steps[2].retry_to.status", "seeded step and never runs"),
    definition_case("definition-simulated-not-after-seed", "variant_steps: [user_img_input, prep, {name: img_gen, "
                    "simulated: true}]\n", "$.variant_steps[2].simulated", "right after the seeded step"),
    definition_case("definition-12000-variant-steps", "variant_steps: [" + ", ".join(f"s{i}" for i in range(12000))
                    + "]\n", "$.variant_steps", "at most 200 item"),
    definition_case("definition-60-job-steps", "variant_steps: [a, b]\njob_steps: ["
                    + ", ".join(f"j{i}" for i in range(60)) + "]\n", "$.job_steps", "at most 50 item"),
    Case("definition-retry-before-the-simulated-step", lambda c: c.run("--pipeline-file", str(c.tmp / "d.yaml")), 2,
         located("$.simulate_img_gen", "img_gen must run again"), many(URL_SCENARIO, write("d.yaml", OVERLAY_STARTS_OVER)),
         "simulate_img_gen"),
    definition_case("definition-seed-row-names-a-variant", "variant_steps: [a, b]\nseed_rows:\n  - {name: r, table: "
                    "t, values: {job_variants_id: '${variant.1.id}'}}\n", "$.seed_rows[0].values.job_variants_id",
                    "a seed row belongs to the job"),
    definition_case("definition-seed-row-unknown-placeholder", "variant_steps: [a, b]\nseed_rows:\n  - {name: r, "
                    "table: t, values: {body: '${scenario.text}'}}\n", "$.seed_rows[0].values.body",
                    "unknown placeholder"),
    definition_case("definition-step-bound-zero", "variant_steps: [a, {name: b, timeout: '0'}]\n",
                    "$.variant_steps[1].timeout", "longer than 0"),
    definition_case("definition-seed-row-column-the-table-lacks", SEED_ROW_TYPO,
                    "$.seed_rows[0].values.ad_copy_english", "has no column 'ad_copy_english'; did you mean"),
    run_case("seed-row-unknown-name", doc("seed_rows: {english_adcopy: false}"), "$.seed_rows.english_adcopy",
             "did you mean 'english_ad_copy'", where="seed_rows"),
    run_case("seed-row-override-column-the-table-lacks",
             doc("seed_rows: {english_ad_copy: {values: {ad_copy_english: x}}}"),
             "$.seed_rows.english_ad_copy.values.ad_copy_english", "has no column", where="seed_rows"),
    run_case("seed-row-tenant-of-a-customer",
             doc("seed_rows: {english_ad_copy: {values: {ad_copy_eng: x, tenant_id: acme_corp}}}"),
             "$.seed_rows.english_ad_copy.values.tenant_id", "acme_corp", where="seed_rows"),
    run_case("fault-duplicate-trigger-on-a-variant-step",
             doc("reference_pipeline: {faults: [{kind: duplicate_trigger, step: planner}]}"),
             "$.reference_pipeline.faults[0].step", "duplicate_trigger", where="reference_pipeline"),
]

MATRIX_BOMB = "matrix:\n" + "".join(f"  k{k}: [{', '.join(map(str, range(20)))}]\n" for k in range(16))
"""16 keys x 20 values, about 1 KB: 20**16 instances if the product were built."""
MATRIX_BASE = ("matrix:\n  variants: [" + ", ".join(map(str, range(1, 21))) + "]\n"
               "  simulate_img_gen: [true, false]\n  cleanup: [always, never, on_success]\n")
"""120 instances: within the limit alone, over it once a file extending it adds a key of two values."""
ALIASED_DEFAULT = (f'description: &d "${{YE_HOSTILE_UNSET:-{"y" * 400_000}}}"\n'
                   "tags_alias: [" + ", ".join(["*d"] * 2000) + "]")
"""A 400 KB default, used 2,000 times through aliases: 800 MB of text if every copy were made."""
DUPLICATE_NAME = many(write("case.yaml", doc()), write("other.yaml", doc()))
DEEP = 2000


def keyword_case(id: str, expression: str) -> Case:
    return Case(id, lambda c: c.run("-k", expression), 2,
                r"^ye-run: error: -k expression nested deeper than 100 levels \(parentheses and 'not'\)$", URL_SCENARIO)


SELECTION_CASES = [
    run_case("matrix-bomb-16-keys-20-values", doc(MATRIX_BOMB), "$.matrix",
             f"the matrix makes {20 ** 16:,} instances; the limit is 200$", where="matrix:"),
    validate_case("validate-matrix-bomb", doc(MATRIX_BOMB), "$.matrix", "the limit is 200$", where="matrix:"),
    Case("matrix-multiplied-through-extends", lambda c: c.run(), 2, located("$.matrix", "makes 240 instances"),
         many(write("_base.yaml", MATRIX_BASE), write("case.yaml", doc("extends: _base.yaml", "matrix:",
                                                                        "  mode: [once, {interval: 1s, jobs: 2}]"))),
         where="matrix:"),
    run_case("matrix-values-read-alike", doc("matrix:", '  description_kor: ["x,variants=2", x]',
                                             '  variants: [1, "2,variants=1"]'), "$.matrix", "make their values differ",
             where="matrix:"),
    Case("duplicate-scenario-names", lambda c: ["run", c.file, str(c.tmp / "other.yaml"), "--database-url", c.url], 2,
         located("$.name", "scenario name 'hostile' is also the name of {file}:\\d+:\\d+; names must be unique",
                 file=r"{tmp}/other\.yaml"), DUPLICATE_NAME),
    Case("validate-duplicate-scenario-names", lambda c: ["validate", "-q", c.file, str(c.tmp / "other.yaml")], 1,
         located("$.name", "is also the name of", file=r"{tmp}/other\.yaml"), DUPLICATE_NAME, summary=True),
    run_case("variables-defaults-nested-too-deep", doc(description='"' + "${A:-" * 11 + "x" + "}" * 11 + '"'),
             "$.description", "nested deeper than 10 levels", where="description"),
    run_case("variables-default-aliased-2000-times", doc(ALIASED_DEFAULT, description=None), "$.tags_alias",
             "would pass 2,000,000 characters", where="description"),
    keyword_case("keyword-2000-parentheses", "(" * DEEP + "hostile" + ")" * DEEP),
    keyword_case("keyword-5000-not", "not " * 5000 + "hostile"),
    keyword_case("keyword-not-and-parentheses", "(not " * DEEP + "hostile" + ")" * DEEP),
]

CASES = (YAML_CASES + SCHEMA_CASES + TENANT_CASES + IMAGE_CASES + SQL_CASES + URL_CASES + CLI_CASES
         + DEFINITION_CASES + SELECTION_CASES)


def test_the_corpus_is_large_and_its_ids_unique():
    assert len(CASES) >= 70
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input_is_refused_in_one_line_and_writes_nothing(case: Case, target: Target, tmp_path: Path):
    ctx = Ctx(tmp_path, target.url, target.database)
    case.files(tmp_path)
    argv = case.argv(ctx)
    before = snapshot(target.database)
    try:
        with alarm(CASE_TIMEOUT), memory_limit(CASE_MEMORY):
            result = CliRunner().invoke(cli, argv)
    except Hung as exc:
        pytest.fail(f"{case.id}: ye-run {' '.join(argv)}: {exc}")
    after = snapshot(target.database)
    problems = verdict(case, ctx, result.stdout, result.stderr, result.exit_code) + changes(before, after)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        problems.append(f"CliRunner caught {type(result.exception).__name__}: {result.exception}")
    assert not problems, (f"ye-run {' '.join(a[:200] for a in argv)}\n  - " + "\n  - ".join(problems)
                          + f"\n--- stdout ---\n{result.stdout[:3000]}--- stderr ---\n{result.stderr[:3000]}")


def test_after_the_corpus_the_traps_are_untouched(target: Target):
    """Runs last: the canary rows are all there, no marker file was made, no advisory lock is held."""
    with contextlib.closing(target.database.connect("ye-run tests", autocommit=True)) as conn, \
            conn.cursor() as cur:
        cur.execute("select count(*) from canary")
        assert cur.fetchone()[0] == CANARY_ROWS, "canary rows were deleted"
        cur.execute("select count(*) from pg_locks where locktype = 'advisory'")
        assert cur.fetchone()[0] == 0, "an advisory lock is still held"
    assert not MARKER.exists(), f"{MARKER} was created: a hostile input was executed"
