"""A run's record of seeded rows: exact, in order, and small enough for a 10,000-job run."""

from __future__ import annotations

import json
import sys
import uuid

from runner.db.registry import RunRecord, from_json


def test_uuid_keys_are_packed_and_come_back_exactly_in_order():
    record = RunRecord("r", "s", "ye_t_test")
    seeded = []
    for _ in range(1000):
        rows = [("jobs", (str(uuid.uuid4()),))] + [("jobs_variants", (str(uuid.uuid4()),)) for _ in range(3)]
        record.add(rows)
        seeded.extend(rows)
    assert record.jobs == 1000
    assert record.rows() == {"jobs": [k for t, k in seeded if t == "jobs"],
                             "jobs_variants": [k for t, k in seeded if t == "jobs_variants"]}
    packed = sum(len(keys.packed) for keys in record._keys.values())
    assert packed == 4000 * 16  # 16 bytes a key, not a tuple and a 36-character string (~140 bytes)
    assert sys.getsizeof(record._keys["jobs_variants"].packed) < 3000 * 20


def test_keys_that_are_not_canonical_uuids_are_kept_as_given_and_order_is_kept():
    record = RunRecord("r", "s", "ye_t_test")
    lower, upper = str(uuid.uuid4()), str(uuid.uuid4()).upper()
    record.add([("fixtures", (lower,)), ("fixtures", (upper,)), ("fixtures", ("7",)), ("pairs", ("a", "b"))])
    record.add([("fixtures", (lower,))])
    assert record.rows() == {"fixtures": [(lower,), (upper,), ("7",), (lower,)], "pairs": [("a", "b")]}


def test_json_round_trip_and_registry_shape():
    record = RunRecord("r", "s", "ye_t_test", tenant_created=True)
    job = str(uuid.uuid4())
    record.add([("jobs", (job,)), ("job_inputs", (job,)), ("tenants", ("ye_t_test",))])
    doc = json.loads(json.dumps(record.to_json()))
    assert doc["rows"] == {"jobs": [[job]], "job_inputs": [[job]], "tenants": [["ye_t_test"]]}
    again = from_json(doc)
    assert again.rows() == record.rows() and again.job_ids == [job] and again.tenant_created
    assert again.jobs == 0  # rows read back from a report: not jobs this process seeded
