"""Choosing the database: an external URL, or the embedded default when none is given."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from runner.db import embedded
from runner.db.connect import Database, parse_url


@contextlib.contextmanager
def open_database(url: str | None, ephemeral: bool = False, probe: bool = True) -> Iterator[Database]:
    """The external database at `url` (checked by connecting once, unless the caller's first connection will
    say the same at once: `probe=False`), else the embedded server."""
    if url:
        database = Database(parse_url(url))
        if probe:
            with contextlib.closing(database.connect("ye-run probe")):
                pass
        yield database
        return
    with embedded.server(ephemeral=ephemeral) as database:
        yield database
