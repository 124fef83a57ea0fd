"""Options shared by several commands."""

from __future__ import annotations

import click

database_url = click.option(
    "--database-url", envvar="YE_DATABASE_URL", metavar="URL",
    help="External PostgreSQL (SQLAlchemy URL, e.g. postgresql://user:pass@host:5432/db; env YE_DATABASE_URL). "
         "Default: the embedded server (data in ~/.cache/ye-run/pg).")
ephemeral = click.option("--ephemeral", is_flag=True,
                         help="Embedded server in a temporary directory, removed afterwards.")
tenant_pattern = click.option(
    "--tenant-pattern", envvar="YE_TENANT_PATTERN", metavar="REGEX",
    help="Tenants ye-run may write to or delete (default: contains 'test' or starts with ye_/qa_; "
         "env YE_TENANT_PATTERN).")
force = click.option("--force", is_flag=True, help="Write to or delete a tenant that fails the tenant guard.")
