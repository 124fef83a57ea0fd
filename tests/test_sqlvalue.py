"""An SQL check's value tests: what passes, and a failure that shows the value it got."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from runner.sqlvalue import ValueTest


@pytest.mark.parametrize("test,actual,holds", [
    (ValueTest("at_least", 3), 3, True),
    (ValueTest("at_least", 3), Decimal("2.999"), False),
    (ValueTest("at_most", 3), 3.0, True),
    (ValueTest("greater_than", 3), 3, False),
    (ValueTest("less_than", 0.5), Decimal("0.4999"), True),
    (ValueTest("between", (1, 5)), 1, True),
    (ValueTest("between", (1, 5)), 5, True),
    (ValueTest("between", (1, 5)), Decimal("5.01"), False),
    (ValueTest("approx", 0.5, 0.01), Decimal("0.51"), True),
    (ValueTest("approx", 0.5, 0.01), 0.5101, False),
    (ValueTest("approx", 200, 5, relative=True), 210, True),
    (ValueTest("approx", 200, 5, relative=True), 211, False),
    (ValueTest("approx", 1, 1), Decimal("Infinity"), False),
    (ValueTest("at_least", 1), Decimal("Infinity"), True),
    (ValueTest("at_least", 1), Decimal("NaN"), False),
    (ValueTest("at_least", 1), float("nan"), False),
    (ValueTest("at_least", 1), True, False),
    (ValueTest("at_least", 1), "5", False),
    (ValueTest("at_least", 1), None, False),
    (ValueTest("matches", "^instagram_"), "instagram_feed_gen", True),
    (ValueTest("matches", "feed"), "instagram_feed_gen", True),
    (ValueTest("matches", "^feed"), "instagram_feed_gen", False),
    (ValueTest("matches", "^2026-01-02 03:04"), datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc), True),
    (ValueTest("matches", "^true$"), True, True),
    (ValueTest("matches", "."), None, False),
    (ValueTest("equals", 3), Decimal("3.000"), True),
    (ValueTest("equals", True), False, False),
    (ValueTest("equals", None), None, True),
    (ValueTest("equals", "done"), "done", True),
])
def test_a_value_test_holds_as_its_words_say(test: ValueTest, actual: object, holds: bool):
    assert test.holds(actual) is holds


@pytest.mark.parametrize("test,actual,message", [
    (ValueTest("at_least", 4), 3, "expected >= 4, got 3"),
    (ValueTest("less_than", 0.5), Decimal("0.75"), "expected < 0.5, got 0.75"),
    (ValueTest("between", (1, 5)), 7, "expected between 1 and 5, got 7"),
    (ValueTest("approx", 3, 1, relative=True), Decimal("3.05"), "expected 3 ± 1%, got 3.05"),
    (ValueTest("approx", 0.5, 0.01), 0.6, "expected 0.5 ± 0.01, got 0.6"),
    (ValueTest("matches", "^instagram"), "iou_eval", "expected matching '^instagram', got 'iou_eval'"),
    (ValueTest("at_least", 1), "many", "expected a number >= 1, got 'many' (text)"),
    (ValueTest("at_least", 1), True, "expected a number >= 1, got true (a boolean)"),
    (ValueTest("at_least", 1), Decimal("NaN"), "expected a number >= 1, got NaN (not a number)"),
    (ValueTest("at_least", 1), None, "expected >= 1, got NULL"),
    (ValueTest("equals", 4), 3, "expected 4, got 3"),
    (ValueTest("equals", True), False, "expected true, got false"),
])
def test_a_failure_shows_what_was_wanted_and_the_value_got(test: ValueTest, actual: object, message: str):
    assert test.failure(actual) == message
