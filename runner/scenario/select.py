"""Choosing scenarios: by tag, by a name expression (`-k`, as pytest), and by shard (`--shard K/N`).

Selection runs after every file was loaded and validated, so an invalid file that is not
selected is still an error. Sharding is deterministic: the selected scenarios, sorted by file
and name, are dealt round-robin, so N machines run disjoint parts whose union is the suite.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from runner.errors import InputError
from runner.scenario.model import Scenario

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")


@dataclass(frozen=True, slots=True)
class Selection:
    tags: tuple[str, ...] = ()
    """Any of these (empty: every scenario)."""
    skip_tags: tuple[str, ...] = ()
    keyword: str | None = None
    shard: tuple[int, int] | None = None
    """(K, N), 1-based."""


def select(scenarios: Sequence[Scenario], selection: Selection) -> list[Scenario]:
    """The scenarios a selection keeps, in their given order."""
    matcher = keyword_matcher(selection.keyword) if selection.keyword else None
    kept = [s for s in scenarios
            if (not selection.tags or set(s.tags) & set(selection.tags))
            and not set(s.tags) & set(selection.skip_tags)
            and (matcher is None or matcher(s.name))]
    return shard(kept, *selection.shard) if selection.shard else kept


def shard(scenarios: Sequence[Scenario], k: int, n: int) -> list[Scenario]:
    """Shard K of N: every N-th scenario of the sorted list, starting at the K-th."""
    ordered = sorted(scenarios, key=lambda s: (str(s.path), s.name))
    chosen = {id(s) for s in ordered[k - 1::n]}
    return [s for s in scenarios if id(s) in chosen]


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` with 1 <= K <= N; InputError otherwise."""
    match = re.fullmatch(r"([0-9]+)/([0-9]+)", text.strip())
    if match is None or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise InputError(f"--shard {text!r}: write K/N with 1 <= K <= N, e.g. 2/4")
    return int(match.group(1)), int(match.group(2))


def keyword_matcher(expression: str):  # type: ignore[no-untyped-def]
    """A predicate on names: words match as case-insensitive substrings, with `and`, `or`, `not` and parentheses."""
    tokens = [t for t in _TOKEN.findall(expression)]
    parser = _Parser(tokens, expression)
    tree = parser.expression()
    if parser.position != len(tokens):
        raise InputError(f"-k {expression!r}: unexpected {tokens[parser.position]!r}")
    return lambda name: tree(name.lower())


class _Parser:
    """or-expression := and-expression ('or' and-expression)*; and := not ('and' not)*; not := 'not' not | atom."""

    def __init__(self, tokens: list[str], text: str):
        self.tokens = tokens
        self.text = text
        self.position = 0

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise InputError(f"-k {self.text!r}: the expression ends too early")
        self.position += 1
        return token

    def expression(self):  # type: ignore[no-untyped-def]
        left = self._and()
        while self._peek() == "or":
            self._take()
            right, first = self._and(), left
            left = lambda name, a=first, b=right: a(name) or b(name)  # noqa: E731
        return left

    def _and(self):  # type: ignore[no-untyped-def]
        left = self._not()
        while self._peek() == "and":
            self._take()
            right, first = self._not(), left
            left = lambda name, a=first, b=right: a(name) and b(name)  # noqa: E731
        return left

    def _not(self):  # type: ignore[no-untyped-def]
        if self._peek() == "not":
            self._take()
            inner = self._not()
            return lambda name: not inner(name)
        token = self._take()
        if token == "(":
            inner = self.expression()
            if self._take() != ")":
                raise InputError(f"-k {self.text!r}: a '(' is not closed")
            return inner
        if token in (")", "and", "or"):
            raise InputError(f"-k {self.text!r}: unexpected {token!r}")
        word = token.lower()
        return lambda name: word in name
