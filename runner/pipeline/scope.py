"""Which jobs a worker drives, and what it knows about them (ordinals, variant orders).

An in-process worker drives only the jobs its run registers; `ye-run pipeline` drives the
jobs of test tenants (the tenant guard's pattern) or of one tenant.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from psycopg2 import sql


class Scope:
    """A filter on jobs, safe to extend from another thread while the worker runs."""

    def __init__(self, job_ids: set[str] | None = None, tenant: str | None = None,
                 tenant_pattern: str | None = None):
        self._lock = threading.Lock()
        self._job_ids = set(job_ids) if job_ids is not None else None
        self.tenant = tenant
        self.tenant_pattern = tenant_pattern
        self._regex = re.compile(tenant_pattern, re.IGNORECASE) if tenant_pattern else None

    @classmethod
    def jobs(cls) -> Scope:
        """An initially empty set of jobs, filled with `add` as a run seeds them."""
        return cls(job_ids=set())

    def add(self, job_id: str) -> None:
        with self._lock:
            if self._job_ids is not None:
                self._job_ids.add(job_id)

    def discard(self, job_id: str) -> None:
        """The run is done with the job (it passed: every row is at rest); a long run's scope stays small."""
        with self._lock:
            if self._job_ids is not None:
                self._job_ids.discard(job_id)

    def job_ids(self) -> list[str] | None:
        with self._lock:
            return None if self._job_ids is None else sorted(self._job_ids)

    def admits(self, job_id: str, tenant_id: str | None) -> bool:
        with self._lock:
            if self._job_ids is not None:
                return job_id in self._job_ids  # every notification asks: O(1), not a sorted copy
        if self.tenant is not None:
            return tenant_id == self.tenant
        if self._regex is not None:
            return tenant_id is not None and self._regex.search(tenant_id) is not None
        return True

    def where(self, alias: str = "v") -> tuple[sql.Composable, list]:
        """A SQL condition on jobs_variants (aliased) limiting rows to this scope."""
        ids = self.job_ids()
        if ids is not None:
            return sql.SQL("{}.job_id = ANY(%s::uuid[])").format(sql.Identifier(alias)), [ids]
        tenant = sql.SQL("(SELECT tenant_id FROM jobs j WHERE j.job_id = {}.job_id)").format(sql.Identifier(alias))
        if self.tenant is not None:
            return sql.SQL("{} = %s").format(tenant), [self.tenant]
        if self.tenant_pattern is not None:
            return sql.SQL("{} ~* %s").format(tenant), [self.tenant_pattern]
        return sql.SQL("TRUE"), []


    def where_job(self, alias: str = "j") -> tuple[sql.Composable, list]:
        """A SQL condition on jobs (aliased) limiting rows to this scope."""
        ids = self.job_ids()
        column = sql.SQL("{}.{}").format
        if ids is not None:
            return sql.SQL("{} = ANY(%s::uuid[])").format(column(sql.Identifier(alias), sql.Identifier("job_id"))), [ids]
        tenant = column(sql.Identifier(alias), sql.Identifier("tenant_id"))
        if self.tenant is not None:
            return sql.SQL("{} = %s").format(tenant), [self.tenant]
        if self.tenant_pattern is not None:
            return sql.SQL("{} ~* %s").format(tenant), [self.tenant_pattern]
        return sql.SQL("TRUE"), []


@dataclass(frozen=True, slots=True)
class VariantInfo:
    variant_id: str
    job_id: str
    creation_order: int
    job_ordinal: int


class JobBook:
    """Job ordinals in the order first seen, and each variant's creation_order (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ordinals: dict[str, int] = {}
        self._variants: dict[str, VariantInfo] = {}

    def known(self, variant_id: str) -> VariantInfo | None:
        with self._lock:
            return self._variants.get(variant_id)

    def ordinal(self, job_id: str) -> int | None:
        with self._lock:
            return self._ordinals.get(job_id)

    def learn(self, job_id: str, variants: list[tuple[str, int]]) -> None:
        with self._lock:
            ordinal = self._ordinals.setdefault(job_id, len(self._ordinals) + 1)
            for variant_id, order in variants:
                self._variants[variant_id] = VariantInfo(variant_id, job_id, order, ordinal)
