"""The `${NAME}` language of scenario strings: one pass to parse, defaults resolved only when used.

`${NAME}` is a variable, `${NAME:-default}` one with a default that may itself hold variables
(`${A:-${B:-x}}`: A, else B, else x), `$${NAME}` the literal text `${NAME}`. Anything else in
`${...}` (a fixture placeholder such as `${job.id}`) is kept as written, its braces balanced so
it can sit inside a default. Nesting is bounded, and so is the text substitution may produce.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

MAX_NESTING = 10
"""How deep `${...}` may nest inside a default; deeper is refused rather than parsed."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPENING = re.compile(r"\$\$\{|\$\{")
_OPENING_OR_CLOSING = re.compile(r"\$\$\{|\$\{|\}")


@dataclass(frozen=True, slots=True)
class Variable:
    """`${name}`, or `${name:-default}` with its default parsed."""

    name: str
    default: tuple[Part, ...] | None


Part = str | Variable


class TooDeep(Exception):
    """`${...}` nested deeper than MAX_NESTING."""


class TooLong(Exception):
    """Substitution would produce more text than the budget allows."""


def parse(text: str) -> list[Part]:
    """Literal text and variables, in order; TooDeep past MAX_NESTING."""
    return _Scanner(text).parts(0, inside=False)[0]


class _Scanner:
    """One string read once, left to right (linear in its length whatever it holds)."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def parts(self, depth: int, inside: bool) -> tuple[list[Part], bool]:
        """The parts up to the end, or (inside `${`) up to the `}` that closes it; and whether it was closed."""
        out: list[Part] = []
        special = _OPENING_OR_CLOSING if inside else _OPENING
        while (found := special.search(self.text, self.pos)) is not None:
            out.append(self.text[self.pos:found.start()])
            self.pos = found.start()
            if found.group() == "}":
                self.pos += 1
                return out, True
            out.extend(self._escaped(depth) if found.group() == "$${" else self._reference(depth))
        out.append(self.text[self.pos:])
        self.pos = len(self.text)
        return out, False

    def _reference(self, depth: int) -> list[Part]:
        """At `${`: a variable, or text kept as written (with any variable inside it resolved)."""
        start = self.pos
        name = _NAME.match(self.text, start + 2)
        if name is not None and self.text.startswith("}", name.end()):
            self.pos = name.end() + 1
            return [Variable(name.group(), None)]
        if name is not None and self.text.startswith(":-", name.end()):
            self.pos = name.end() + 2
            default, closed = self._deeper(depth)
            return [Variable(name.group(), tuple(default))] if closed else [self.text[start:name.end() + 2], *default]
        self.pos = start + 2
        inner, closed = self._deeper(depth)
        return ["${", *inner, "}" if closed else ""]

    def _escaped(self, depth: int) -> list[Part]:
        """At `$${`: a whole variable reference is kept as written, less one `$`."""
        self.pos += 1
        start = self.pos
        parts = self._reference(depth)
        if len(parts) == 1 and isinstance(parts[0], Variable):
            return [self.text[start:self.pos]]
        return ["$", *parts]

    def _deeper(self, depth: int) -> tuple[list[Part], bool]:
        if depth >= MAX_NESTING:
            raise TooDeep()
        return self.parts(depth + 1, inside=True)


class Resolver:
    """Resolves parsed strings against the values in force, within one budget of characters for a whole file."""

    def __init__(self, values: Mapping[str, str], budget: int):
        self.values = values
        self.budget = budget
        self.undefined: list[str] = []
        """Names used without a value or a default, in order of use."""

    def text(self, parts: list[Part] | tuple[Part, ...]) -> str:
        """The parts with every variable replaced; an undefined one is kept as written. TooLong past the budget."""
        pieces: list[str] = []
        self._into(parts, pieces)
        return "".join(pieces)

    def _into(self, parts: list[Part] | tuple[Part, ...], pieces: list[str]) -> None:
        for part in parts:
            if isinstance(part, Variable) and part.name not in self.values and part.default is not None:
                self._into(part.default, pieces)
                continue
            piece = part if isinstance(part, str) else self._value(part)
            self.budget -= len(piece)
            if self.budget < 0:
                raise TooLong()
            pieces.append(piece)

    def _value(self, variable: Variable) -> str:
        if variable.name in self.values:
            return self.values[variable.name]
        self.undefined.append(variable.name)
        return f"${{{variable.name}}}"
