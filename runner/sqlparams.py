"""Named parameters (`:job_id`) in user SQL: found and converted the same way everywhere.

String literals, quoted identifiers and comments are skipped, and `::` casts are not
parameters, so validation and execution always agree on what a parameter is.
"""

from __future__ import annotations

import re

_LITERALS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", re.S)
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def code_only(query: str) -> str:
    """The query with literals and comments blanked out."""
    return _LITERALS.sub(" ", query)


def names(query: str) -> list[str]:
    """The named parameters a query uses, in order of appearance."""
    return _PARAM.findall(code_only(query))


def to_pyformat(query: str) -> str:
    """`:name` -> `%(name)s` for psycopg2, with every literal `%` doubled."""
    out = []
    position = 0
    for match in _LITERALS.finditer(query):
        out.append(_convert(query[position:match.start()]))
        out.append(match.group(0).replace("%", "%%"))
        position = match.end()
    out.append(_convert(query[position:]))
    return "".join(out)


def _convert(code: str) -> str:
    return _PARAM.sub(lambda m: f"%({m.group(1)})s", code.replace("%", "%%"))
