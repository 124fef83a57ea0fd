"""What an SQL check may be, decided on PostgreSQL's own parse tree: no database needed."""

from __future__ import annotations

import pytest

from runner import sqlsafety

ONE_QUERY = "an SQL check is one read-only query (SELECT, VALUES or TABLE)"

LEGIT = [
    "select count(*) from jobs_variants where job_id = :job_id",
    "select ':job_id' || '%'",
    "select job_id::text, now(), count(*) over () from jobs where tenant_id = :tenant_id",
    "with v as (select * from jobs_variants where job_id = :job_id) select count(*) from v",
    "with recursive n(i) as (select 1 union all select i + 1 from n where i < 3) select sum(i) from n",
    "select j.job_id from jobs j join jobs_variants v using (job_id) where v.job_id = :job_id",
    "select (select count(*) from jobs_variants v where v.job_id = j.job_id) from jobs j",
    "select row_number() over (partition by job_id order by creation_order) from jobs_variants",
    "values (1)",
    "table jobs",
    "select 1;",
    "select /* /* */ ; delete from canary; /* */ */ 1",
    "select $$ ; delete from canary $$",
    "select E'\\' ; delete from canary'",
    "select 1 -- ; delete from canary",
    "select arr[1:2], arr[lo:hi] from (select array[1, 2, 3] as arr, 1 as lo, 2 as hi) a",
    "select random(), clock_timestamp()",
    "select count(*) from jobs where job_id = :job_id and tenant_id = :tenant_id and :job_id is not null",
]

# (query, what the refusal says): every way we could think of to get a write, a lock or a
# second statement past the check.
REFUSED = [
    # the reproduced bypasses: quoting a regex does not understand
    ("select $a$'$a$ ; commit; delete from canary --'", f"{ONE_QUERY}; found 3 statements"),
    ("select E'\\'' ; commit; delete from canary --'", f"{ONE_QUERY}; found 3 statements"),
    ("copy (select 1) to program 'touch pwned'", f"{ONE_QUERY}; found COPY"),
    # more quoting forms
    ("select $tag$ $$ ; $tag$ ; delete from canary", f"{ONE_QUERY}; found 2 statements"),
    ("select $$;$$; delete from canary", f"{ONE_QUERY}; found 2 statements"),
    ("select 'it''s' ; delete from canary --'", f"{ONE_QUERY}; found 2 statements"),
    ("select E'\\\\' ; delete from canary --'", f"{ONE_QUERY}; found 2 statements"),
    ("select U&'d\\0061t\\+000061' ; delete from canary", f"{ONE_QUERY}; found 2 statements"),
    ("select U&'!0027' uescape '!' ; delete from canary --'", f"{ONE_QUERY}; found 2 statements"),
    ('select 1 as U&"x;""" ; delete from canary --"', f"{ONE_QUERY}; found 2 statements"),
    ('select 1 as "a"";" ; delete from canary', f"{ONE_QUERY}; found 2 statements"),
    ("select 1 /* /* */ */ ; delete from canary", f"{ONE_QUERY}; found 2 statements"),
    ("select 1 -- comment\n; delete from canary", f"{ONE_QUERY}; found 2 statements"),
    ("select 1 -- a carriage return ends a comment too\r; delete from canary", f"{ONE_QUERY}; found 2 statements"),
    ("select B'1' ; delete from canary", f"{ONE_QUERY}; found 2 statements"),
    # more statements, and statements that are not queries
    ("select 1; delete from canary", f"{ONE_QUERY}; found 2 statements"),
    ("begin; delete from canary; commit", f"{ONE_QUERY}; found 3 statements"),
    ("table canary; truncate canary", f"{ONE_QUERY}; found 2 statements"),
    ("values (1); drop table canary", f"{ONE_QUERY}; found 2 statements"),
    ("delete from canary", f"{ONE_QUERY}; found DELETE"),
    ("insert into canary values (1)", f"{ONE_QUERY}; found INSERT"),
    ("update canary set n = 0", f"{ONE_QUERY}; found UPDATE"),
    ("merge into canary c using (select 1 n) s on c.n = s.n when matched then delete", f"{ONE_QUERY}; found MERGE"),
    ("with x as (select 1) delete from canary", f"{ONE_QUERY}; found DELETE"),
    ("truncate canary", f"{ONE_QUERY}; found TRUNCATE"),
    ("copy canary to stdout", f"{ONE_QUERY}; found COPY"),
    ("copy canary from program 'cat /etc/passwd'", f"{ONE_QUERY}; found COPY"),
    ("do $$ begin delete from canary; end $$", f"{ONE_QUERY}; found DO"),
    ("call purge_canary()", f"{ONE_QUERY}; found CALL"),
    ("set default_transaction_read_only = off", f"{ONE_QUERY}; found SET"),
    ("set role postgres", f"{ONE_QUERY}; found SET"),
    ("set session authorization postgres", f"{ONE_QUERY}; found SET"),
    ("reset all", f"{ONE_QUERY}; found RESET"),
    ("listen ye_channel", f"{ONE_QUERY}; found LISTEN"),
    ("notify jobs_variants_changed, 'fake'", f"{ONE_QUERY}; found NOTIFY"),
    ("prepare p as delete from canary", f"{ONE_QUERY}; found PREPARE"),
    ("execute p", f"{ONE_QUERY}; found EXECUTE"),
    ("lock table canary in access exclusive mode", f"{ONE_QUERY}; found LOCK"),
    ("vacuum canary", f"{ONE_QUERY}; found VACUUM"),
    ("analyze canary", f"{ONE_QUERY}; found ANALYZE"),
    ("create table stolen as select * from canary", f"{ONE_QUERY}; found CREATE ... AS"),
    ("create materialized view stolen as select * from canary", f"{ONE_QUERY}; found CREATE ... AS"),
    ("explain analyze delete from canary", f"{ONE_QUERY}; found EXPLAIN"),
    ("commit", f"{ONE_QUERY}; found COMMIT"),
    ("checkpoint", f"{ONE_QUERY}; found CHECKPOINT"),
    ("discard all", f"{ONE_QUERY}; found DISCARD"),
    ("alter system set fsync = off", f"{ONE_QUERY}; found ALTER"),
    ("", f"{ONE_QUERY}; the query is empty"),
    (" ; ; ", f"{ONE_QUERY}; the query is empty"),
    ("-- nothing but a comment", f"{ONE_QUERY}; the query is empty"),
    # SELECT INTO
    ("select * into stolen from canary", "SELECT INTO creates a table; an SQL check only reads"),
    ("select * into temp stolen from canary", "SELECT INTO creates a table; an SQL check only reads"),
    # writable CTEs, at the top and nested
    ("with gone as (delete from canary returning *) select count(*) from gone",
     "found a data-modifying WITH (DELETE); an SQL check only reads"),
    ("with x as (insert into canary values (1) returning *) select 1", "found a data-modifying WITH (INSERT)"),
    ("with x as (update canary set n = 0 returning *) select 1", "found a data-modifying WITH (UPDATE)"),
    ("with x as (merge into canary c using (select 1 n) s on c.n = s.n when matched then delete returning *) "
     "select 1", "found a data-modifying WITH (MERGE)"),
    ("select * from (with d as (delete from canary returning *) select * from d) s",
     "found a data-modifying WITH (DELETE)"),
    ("select (with d as (delete from canary returning 1) select 1)", "found a data-modifying WITH (DELETE)"),
    ("with a as (with b as (delete from canary returning 1) select * from b) select * from a",
     "found a data-modifying WITH (DELETE)"),
    ("select 1 where exists (with d as (update canary set n = 1 returning 1) select 1)",
     "found a data-modifying WITH (UPDATE)"),
    # locking clauses, at the top and nested
    ("select * from canary for update", "SELECT ... FOR UPDATE locks rows; an SQL check only reads"),
    ("select * from canary for share", "SELECT ... FOR SHARE locks rows"),
    ("select * from canary for no key update", "SELECT ... FOR NO KEY UPDATE locks rows"),
    ("select * from canary for key share", "SELECT ... FOR KEY SHARE locks rows"),
    ("select * from canary for update of canary skip locked", "SELECT ... FOR UPDATE locks rows"),
    ("select * from (select * from canary for update) c", "SELECT ... FOR UPDATE locks rows"),
    ("with c as (select * from canary for share) select * from c", "SELECT ... FOR SHARE locks rows"),
    ("select 1 where exists (select 1 from canary for key share nowait)", "SELECT ... FOR KEY SHARE locks rows"),
    ("select 1 union all (select 1 from canary for update)", "SELECT ... FOR UPDATE locks rows"),
    # parameters that are not ours
    ("select * from canary where n = $1", "positional parameters ($1) are not available in an SQL check"),
    # not SQL at all
    ("select 'unterminated", "unterminated quoted string at or near \"'unterminated\""),
    ("select $a$ never closed", "unterminated dollar-quoted string at or near \"$a$ never closed\""),
    ("select 1 /* never closed", "unterminated /* comment at or near \"/* never closed\""),
    ("select E:tenant_id", 'syntax error at or near ":"'),
    ("selec 1", 'syntax error at or near "selec"'),
]


@pytest.mark.parametrize("query", LEGIT)
def test_plain_queries_are_accepted(query: str):
    assert sqlsafety.analyze(query).problems == ()


def test_the_corpus_is_large_enough():
    assert len(REFUSED) >= 60


@pytest.mark.parametrize("query,message", REFUSED, ids=[f"{i:02d}" for i in range(len(REFUSED))])
def test_bypass_attempts_are_refused(query: str, message: str):
    problems = sqlsafety.analyze(query).problems
    assert problems, query
    assert any(p.message.startswith(message) for p in problems), problems


@pytest.mark.parametrize("query,word", [
    ("select 1; delete from canary", "delete"),
    ("select $a$'$a$ ; commit; delete from canary --'", "commit"),
    ("select é, ü ; delete from canary", "delete"),
    ("select * from canary where n = :job_id for update", "for update"),
    ("with gone as (delete from canary returning *) select 1", "gone"),
    ("select * into stolen from canary", "stolen"),
    ("select 1 frm canary", "canary"),
    ("select :job_id, 'x' ; copy canary to stdout", "copy"),
])
def test_positions_are_characters_of_the_query_as_written(query: str, word: str):
    problem = sqlsafety.analyze(query).problems[0]
    assert problem.position == query.index(word), problem


def test_parameters_are_found_by_the_scanner():
    analysis = sqlsafety.analyze("select :job_id::text, ':tenant_id', \":x\", $$:y$$, E'\\':z', :tenant_id, "
                                 ":job_id /* :w */ -- :v\n")
    assert analysis.params == ("job_id", "tenant_id")
    assert analysis.parse_text == ("select  $1 ::text, ':tenant_id', \":x\", $$:y$$, E'\\':z',  $2 ,  $1  "
                                   "/* :w */ -- :v\n")
    assert analysis.exec_text == ("select  %(job_id)s ::text, ':tenant_id', \":x\", $$:y$$, E'\\':z',  "
                                  "%(tenant_id)s ,  %(job_id)s  /* :w */ -- :v\n")


def test_every_literal_percent_is_doubled_for_psycopg2():
    analysis = sqlsafety.analyze("select '100%' like '%' || :tenant_id, 7 % 2 /* % */")
    assert analysis.exec_text == "select '100%%' like '%%' ||  %(tenant_id)s , 7 %% 2 /* %% */"
    assert analysis.exec_text.replace("%%", "%").replace(" %(tenant_id)s ", " $1 ") == analysis.parse_text


def test_slices_and_casts_are_not_parameters():
    assert sqlsafety.analyze("select a[lo:hi], a[1:2], x::int, a[i:job_id] from t").params == ()


def test_unknown_parameters_are_reported_by_name():
    assert sqlsafety.analyze("select 1 where :jobid = :tenant_id").params == ("jobid", "tenant_id")


def test_functions_and_operators_are_collected_for_the_catalog_check():
    analysis = sqlsafety.analyze(
        "select pg_catalog.set_config('a', 'b', false), count(*), x operator(public.===) 1 "
        "from t where a between 1 and 2 and b in (select nextval('s')) order by a using ~<~")
    assert [str(f) for f in analysis.functions] == ["pg_catalog.set_config", "count", "nextval"]
    assert sorted(str(o) for o in analysis.operators) == ["<=", "=", ">=", "public.===", "~<~"]
    assert analysis.functions[0].schema == "pg_catalog" and analysis.functions[1].schema is None


def test_functions_are_collected_everywhere_in_the_tree():
    analysis = sqlsafety.analyze(
        "with a as (select pg_advisory_lock(1)) select (select pg_sleep(1)), x from a, "
        "lateral (select pg_terminate_backend(2)) t(x) where exists (select lo_import('/etc/passwd')) "
        "group by x having max(txid_current()) > 0 order by pg_cancel_backend(3)")
    assert {str(f) for f in analysis.functions} == {"pg_advisory_lock", "pg_sleep", "pg_terminate_backend",
                                                    "lo_import", "max", "txid_current", "pg_cancel_backend"}
