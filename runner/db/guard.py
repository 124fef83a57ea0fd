"""The tenant guard: ye-run writes and deletes only tenants that look like test data.

A typo in a tenant id must not seed into, or delete from, a real customer's tenant.
"""

from __future__ import annotations

import re
import sys

from runner.errors import GuardError

DEFAULT_PATTERN = r"^(ye|qa)_|(^|[^a-z0-9])tests?([^a-z]|$)"
"""Default: starts with ye_ or qa_, or has the word `test` (or `tests`) in it: at the start or after a
separator, and at the end or before a separator or digit (case-insensitive). `acme_test`, `test-shop`,
`e2e.test1` pass; `latest_corp` and `protestant_x` do not."""


def check_tenant(tenant_id: str, pattern: str | None = None, force: bool = False, action: str = "write to") -> None:
    """Raise GuardError unless the tenant id matches the safe pattern; with force, warn loudly."""
    safe = pattern or DEFAULT_PATTERN
    try:
        matches = "\n" not in tenant_id and re.search(safe, tenant_id, flags=re.IGNORECASE) is not None
    except re.error as exc:
        raise GuardError(f"bad --tenant-pattern {safe!r}: {exc}") from None
    if matches:
        return
    if force:
        print(f"ye-run: WARNING: --force: about to {action} tenant {tenant_id!r}, which does not match "
              f"the test-tenant pattern {safe!r}", file=sys.stderr)
        return
    raise GuardError(f"refusing to {action} tenant {tenant_id!r}: it does not look like test data (pattern "
                     f"{safe!r}: the word 'test' in it, or ye_/qa_ at the start). Use a test tenant, set "
                     "--tenant-pattern/YE_TENANT_PATTERN, or pass --force if you really mean it")
