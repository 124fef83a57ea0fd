"""Choosing scenarios: by tag, by a name expression (`-k`, as pytest), and by shard (`--shard K/N`).

Selection runs after every file was loaded and validated, so an invalid file that is not
selected is still an error. What tags and `-k` keep must have unique names, checked before
sharding (scenarios of one name on two machines would still meet in the merged reports).
Sharding is deterministic: the selected scenarios, sorted by file and name, are dealt
round-robin, so N machines run disjoint parts whose union is the suite. Given past durations
(`balanced`), the longest is dealt first, each to the machine with the least time so far, so the
slowest shard ends sooner; the same durations give every machine the same split.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from runner.errors import InputError, ScenarioError
from runner.scenario import names
from runner.scenario.model import Scenario

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")
MAX_NESTING = 100
"""How deep `-k` may nest parentheses and `not`s; deeper is refused as bad input."""
Predicate = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class Selection:
    tags: tuple[str, ...] = ()
    """Any of these (empty: every scenario)."""
    skip_tags: tuple[str, ...] = ()
    keyword: str | None = None
    shard: tuple[int, int] | None = None
    """(K, N), 1-based."""


def select(scenarios: Sequence[Scenario], selection: Selection) -> list[Scenario]:
    """The scenarios a selection keeps, in their given order; ScenarioError when two of them share a name."""
    matcher = keyword_matcher(selection.keyword) if selection.keyword else None
    kept = [s for s in scenarios
            if (not selection.tags or set(s.tags) & set(selection.tags))
            and not set(s.tags) & set(selection.skip_tags)
            and (matcher is None or matcher(s.name))]
    twins = names.duplicates(kept)
    if twins:
        raise ScenarioError(twins)
    return shard(kept, *selection.shard) if selection.shard else kept


def shard(scenarios: Sequence[Scenario], k: int, n: int) -> list[Scenario]:
    """Shard K of N: every N-th scenario of the sorted list, starting at the K-th."""
    ordered = sorted(scenarios, key=lambda s: (str(s.path), s.name))
    chosen = {id(s) for s in ordered[k - 1::n]}
    return [s for s in scenarios if id(s) in chosen]


def balanced(scenarios: Sequence[Scenario], k: int, n: int, durations: Mapping[str, float]) -> list[Scenario]:
    """Shard K of N by past durations (seconds by name); without any, `shard`. In the scenarios' given order."""
    if not durations:
        return shard(scenarios, k, n)
    chosen = {id(s) for s in partition(scenarios, n, durations)[k - 1]}
    return [s for s in scenarios if id(s) in chosen]


def partition(scenarios: Sequence[Scenario], n: int, durations: Mapping[str, float]) -> list[list[Scenario]]:
    """N parts, longest first to the least loaded (ties: the lowest part); a scenario with no past duration counts
    as the median of those known."""
    typical = statistics.median(durations.values()) if durations else 1.0
    cost = {id(s): durations.get(s.name, typical) for s in scenarios}
    parts: list[list[Scenario]] = [[] for _ in range(n)]
    loads = [0.0] * n
    for scenario in sorted(scenarios, key=lambda s: (-cost[id(s)], str(s.path), s.name)):
        lightest = min(range(n), key=lambda i: (loads[i], i))
        parts[lightest].append(scenario)
        loads[lightest] += cost[id(scenario)]
    return parts


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` with 1 <= K <= N; InputError otherwise."""
    match = re.fullmatch(r"([0-9]+)/([0-9]+)", text.strip())
    if match is None or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise InputError(f"--shard {text!r}: write K/N with 1 <= K <= N, e.g. 2/4")
    return int(match.group(1)), int(match.group(2))


def keyword_matcher(expression: str) -> Predicate:
    """A predicate on names: words match as case-insensitive substrings, with `and`, `or`, `not` and parentheses."""
    tokens = [t for t in _TOKEN.findall(expression)]
    parser = _Parser(tokens, expression)
    tree = parser.expression()
    if parser.position != len(tokens):
        raise InputError(f"-k {expression!r}: unexpected {tokens[parser.position]!r}")
    return lambda name: tree(name.lower())


class _Parser:
    """or-expression := and-expression ('or' and-expression)*; and := not ('and' not)*; not := 'not' not | atom.

    Runs of `or` and `and` become one flat `any` / `all`, so only `not` and parentheses nest, and their depth
    is bounded: a hostile `-k` is bad input, never a RecursionError."""

    def __init__(self, tokens: list[str], text: str):
        self.tokens = tokens
        self.text = text
        self.position = 0
        self.depth = 0

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise InputError(f"-k {self.text!r}: the expression ends too early")
        self.position += 1
        return token

    def expression(self) -> Predicate:
        terms = [self._and()]
        while self._peek() == "or":
            self._take()
            terms.append(self._and())
        return terms[0] if len(terms) == 1 else lambda name: any(term(name) for term in terms)

    def _and(self) -> Predicate:
        factors = [self._not()]
        while self._peek() == "and":
            self._take()
            factors.append(self._not())
        return factors[0] if len(factors) == 1 else lambda name: all(factor(name) for factor in factors)

    def _not(self) -> Predicate:
        if self._peek() == "not":
            self._take()
            inner = self._nested(self._not)
            return lambda name: not inner(name)
        token = self._take()
        if token == "(":
            inner = self._nested(self.expression)
            if self._take() != ")":
                raise InputError(f"-k {self.text!r}: a '(' is not closed")
            return inner
        if token in (")", "and", "or"):
            raise InputError(f"-k {self.text!r}: unexpected {token!r}")
        word = token.lower()
        return lambda name: word in name

    def _nested(self, parse: Callable[[], Predicate]) -> Predicate:
        """One level deeper (a `not` or a `(`), refused past MAX_NESTING."""
        if self.depth >= MAX_NESTING:
            raise InputError(f"-k expression nested deeper than {MAX_NESTING} levels (parentheses and 'not')")
        self.depth += 1
        try:
            return parse()
        finally:
            self.depth -= 1
