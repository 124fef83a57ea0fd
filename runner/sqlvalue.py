"""What an SQL check's value is held to: equal, a bound, a range, approximately, a pattern.

A check that fails says what it wanted and the value it got, so a failure reads
`expected >= 3, got 2` rather than the `expected True, got False` of a comparison written in SQL.
Numbers are compared exactly (as decimals); a value that is not a number (text, NULL, NaN) never
passes a numeric test, and says so.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from runner.definition import Scalar

Test = Literal["equals", "at_least", "at_most", "greater_than", "less_than", "between", "approx", "matches"]
TESTS: tuple[Test, ...] = ("equals", "at_least", "at_most", "greater_than", "less_than", "between", "approx",
                           "matches")
"""The keys of an SQL check that test its value, in the order the docs list them."""
NUMERIC: frozenset[str] = frozenset({"at_least", "at_most", "greater_than", "less_than", "between", "approx"})
_SYMBOL = {"at_least": ">=", "at_most": "<=", "greater_than": ">", "less_than": "<"}
PERCENT = re.compile(r"^([0-9]+(?:\.[0-9]+)?)%$")
"""A relative tolerance, e.g. `5%` (of the expected value)."""


@dataclass(frozen=True, slots=True)
class ValueTest:
    """One test of the value in the first column of a check's only row."""

    test: Test
    expected: Scalar | tuple[float, float] = None
    """The value (equals), the bound, `(low, high)` for between, the centre for approx, the pattern for matches."""
    tolerance: float = 0.0
    """approx: the largest difference allowed (a fraction of the expected value when `relative`)."""
    relative: bool = False

    def holds(self, actual: Any) -> bool:
        """Whether `actual` (as the database driver returned it) passes."""
        if self.test == "equals":
            return _equal(actual, self.expected)
        if self.test == "matches":
            return actual is not None and re.search(str(self.expected), shown_text(actual)) is not None
        number = as_number(actual)
        return number is not None and self._numeric(number)

    def _numeric(self, number: Decimal) -> bool:
        if self.test == "between":
            low, high = self.expected  # type: ignore[misc]
            return _dec(low) <= number <= _dec(high)
        if self.test == "approx":
            return number.is_finite() and abs(number - _dec(self.expected)) <= self.allowed()
        bound = _dec(self.expected)
        return {"at_least": number >= bound, "at_most": number <= bound, "greater_than": number > bound,
                "less_than": number < bound}[self.test]

    def allowed(self) -> Decimal:
        """approx: the largest difference allowed, in the value's units."""
        tolerance = _dec(self.tolerance)
        return abs(_dec(self.expected)) * tolerance / 100 if self.relative else tolerance

    def describe(self) -> str:
        """What is wanted, in a few words: `>= 3`, `between 1 and 5`, `0.5 ± 0.01`, `matching '^ok'`."""
        if self.test == "equals":
            return f"= {shown(self.expected)}"
        if self.test == "between":
            low, high = self.expected  # type: ignore[misc]
            return f"between {shown(low)} and {shown(high)}"
        if self.test == "approx":
            spread = f"{shown(self.tolerance)}%" if self.relative else shown(self.tolerance)
            return f"{shown(self.expected)} ± {spread}"
        if self.test == "matches":
            return f"matching {self.expected!r}"
        return f"{_SYMBOL[self.test]} {shown(self.expected)}"

    def failure(self, actual: Any) -> str:
        """Why `actual` fails: what was wanted, and the value (with what it is when a number was wanted)."""
        wanted = shown(self.expected) if self.test == "equals" else self.describe()
        if self.test in NUMERIC and actual is not None and as_number(actual) is None:
            return f"expected a number {wanted}, got {shown(actual)} ({_kind(actual)})"
        return f"expected {wanted}, got {shown(actual)}"


def as_number(value: Any) -> Decimal | None:
    """`value` as an exact decimal; None for anything that is not a number (text, NULL, a boolean, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    try:
        number = value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else value)
    except InvalidOperation:
        return None
    return None if number.is_nan() else number


def shown(value: Any) -> str:
    """A value as a reader wants it in a message: NULL, numbers as written, text quoted."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return str(int(value)) if abs(value) < 1e16 else repr(value)
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    text = shown_text(value)
    return repr(text if len(text) <= 200 else text[:200] + "…")


def shown_text(value: Any) -> str:
    """The text of a value as PostgreSQL prints it, for `matches` (dates and times in ISO form)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date, time)):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, Decimal)):
        return "not a number"
    return "text" if isinstance(value, str) else type(value).__name__


def _dec(value: Any) -> Decimal:
    number = as_number(value)
    assert number is not None, value  # the loader refused anything else
    return number


def _equal(actual: Any, expected: Any) -> bool:
    if actual is None or expected is None:
        return actual is None and expected is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected or str(actual).lower() == str(expected).lower()
    left, right = as_number(actual), as_number(expected)
    if left is not None and right is not None:
        return left == right
    return str(actual) == str(expected)
