"""Plain-text tables (`compare`, `runs`, `list`): rich lays the columns out, and every cell is printed whole.

A table is as wide as its longest row: a name is never cut to fit a column or wrapped onto a
second line, so a long scenario name still reads (and greps) as one line in a CI log.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Column:
    """A column's header and alignment (numbers to the right)."""

    header: str
    right: bool = False


def lines(columns: Sequence[Column], rows: Iterable[Sequence[str]]) -> list[str]:
    """The table as text lines, a header first, with no colour and no box: as wide as it needs to be."""
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="", padding=(0, 2, 0, 0))
    for column in columns:
        table.add_column(Text(column.header), justify="right" if column.right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    measuring = _console(10**6)
    width = Measurement.get(measuring, measuring.options, table).maximum
    console = _console(max(1, width))
    console.print(table)
    return [line.rstrip() for line in console.file.getvalue().splitlines()]  # type: ignore[attr-defined]


def _console(width: int):  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False, highlight=False,
                   markup=False, emoji=False, soft_wrap=False)
