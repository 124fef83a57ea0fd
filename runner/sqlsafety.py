"""What a user's SQL check is, decided on PostgreSQL's own parse tree (libpg_query via pglast).

An SQL check must be one plain query: a SELECT (or VALUES, or TABLE t) with no SELECT INTO,
no locking clause, and no data-modifying WITH anywhere in it. Named parameters (`:job_id`)
are not PostgreSQL syntax: they are found with libpg_query's own scanner (which knows
dollar quotes, E'' strings, nested comments and `::` casts) and replaced by `$1`, `$2`...
before parsing, so what is checked is what PostgreSQL will see. The functions and operators
the query uses are collected for the catalog check (`runner.db.readonly`), which needs a
database; nothing here does. Positions are character offsets in the query as written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pglast import ast
    from pglast.parser import ParseError

KIND = "an SQL check is one read-only query (SELECT, VALUES or TABLE)"

_WORD_KINDS = ("UNRESERVED_KEYWORD", "COL_NAME_KEYWORD", "TYPE_FUNC_NAME_KEYWORD", "RESERVED_KEYWORD")
_ATOMS = ("IDENT", "UIDENT", "ICONST", "FCONST", "SCONST", "USCONST", "BCONST", "XCONST", "PARAM",
          "ASCII_41", "ASCII_93")
"""Tokens that, right before a ':', make it a slice bound (`a[lo:hi]`), not a parameter."""
_MODIFYING = {"InsertStmt": "INSERT", "UpdateStmt": "UPDATE", "DeleteStmt": "DELETE", "MergeStmt": "MERGE"}
_STATEMENTS = {**_MODIFYING, "CreateTableAsStmt": "CREATE ... AS", "ExplainStmt": "EXPLAIN"}
_LOCKS = {"LCS_FORKEYSHARE": "FOR KEY SHARE", "LCS_FORSHARE": "FOR SHARE",
          "LCS_FORNOKEYUPDATE": "FOR NO KEY UPDATE", "LCS_FORUPDATE": "FOR UPDATE"}
_LOCK_WORDS = {("FOR", "UPDATE"), ("FOR", "SHARE"), ("FOR", "NO"), ("FOR", "KEY")}
_OPERATOR_CHARS = set("+-*/<>=~!@#%^&|`?")
_BETWEEN = ("AEXPR_BETWEEN", "AEXPR_NOT_BETWEEN", "AEXPR_BETWEEN_SYM", "AEXPR_NOT_BETWEEN_SYM")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a query is not an SQL check; `position` is a 0-based character offset, if known."""

    message: str
    position: int | None = None


@dataclass(frozen=True, slots=True)
class Name:
    """A function or operator the query uses, schema-qualified where it was written so."""

    parts: tuple[str, ...]
    position: int | None = None

    @property
    def schema(self) -> str | None:
        return self.parts[-2] if len(self.parts) > 1 else None

    @property
    def name(self) -> str:
        return self.parts[-1]

    def __str__(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True, slots=True)
class Analysis:
    """One query, taken apart: the texts to parse and to execute, its parameters, its problems."""

    query: str
    parse_text: str = ""
    """The query with each parameter as `$n` (what PREPARE takes)."""
    exec_text: str = ""
    """The query for psycopg2's pyformat: parameters as `%(name)s`, every literal `%` doubled."""
    params: tuple[str, ...] = ()
    """Parameter names in order of first appearance; `params[k]` is `$k+1`."""
    functions: tuple[Name, ...] = ()
    operators: tuple[Name, ...] = ()
    problems: tuple[Refusal, ...] = ()
    origins: tuple[int, ...] = field(default=(), repr=False)
    """For each character of `parse_text` (and one past its end): its offset in `query`."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def original(self, parse_position: int | None) -> int | None:
        """The offset in `query` of a character offset in `parse_text`."""
        if parse_position is None or not self.origins:
            return None
        return self.origins[max(0, min(parse_position, len(self.origins) - 1))]


def analyze(query: str) -> Analysis:
    """Parameters, parse, and every reason the query is not one read-only plain query."""
    parse_sql, ParseError, scan = _pglast()
    try:
        tokens = scan(query)
    except ParseError as exc:
        return Analysis(query, problems=(_syntax(exc, lambda p: p),))
    positional = [Refusal("positional parameters ($1) are not available in an SQL check; use :job_id or "
                          ":tenant_id", t.start) for t in tokens if t.name == "PARAM"]
    texts = _substitute(query, tokens)
    base = Analysis(query, texts.parse_text, texts.exec_text, texts.params, origins=texts.origins)
    try:
        statements = parse_sql(texts.parse_text)
    except ParseError as exc:
        return replace(base, problems=(_syntax(exc, base.original),))
    inspection = _Inspection(base, scan(texts.parse_text))
    inspection.statements(statements)
    return replace(base, functions=tuple(inspection.functions), operators=tuple(inspection.operators),
                 problems=tuple(sorted(set(inspection.problems + positional), key=_order)))


def _pglast():  # type: ignore[no-untyped-def]
    """pglast, loaded at first use (it cost every run's start 50 ms, and few scenarios have SQL checks), and held:
    its parser is a C extension that keeps the `ast` module it first saw, so `ast` must stay that one even if
    the import system forgets pglast (pytest's pytester restores sys.modules after an in-process run)."""
    global ast
    if "ast" not in globals():
        import pglast
        import pglast.parser
        from pglast import ast

        _LOADED.extend((pglast.parse_sql, pglast.parser.ParseError, pglast.parser.scan))
    return _LOADED


_LOADED: list[Any] = []


def _order(refusal: Refusal) -> tuple[int, str]:
    return (-1 if refusal.position is None else refusal.position, refusal.message)


def _syntax(exc: ParseError, original: Callable[[int | None], int | None]) -> Refusal:
    message = str(exc.args[0]) if exc.args else "syntax error"
    position = exc.args[1] if len(exc.args) > 1 else None
    return Refusal(message, original(position) if position is not None else None)


# --- parameters -------------------------------------------------------------------------


@dataclass(slots=True)
class _Texts:
    parse_text: str
    exec_text: str
    params: tuple[str, ...]
    origins: tuple[int, ...]


def parameters(tokens: list[Any]) -> list[tuple[int, int]]:
    """(start, end exclusive) of each `:name` in a scanned query.

    A parameter is a ':' token immediately followed by a word; a ':' right after an
    identifier, a constant or a closing bracket is an array slice bound (`a[lo:hi]`).
    """
    found = []
    for i, token in enumerate(tokens[:-1]):
        following = tokens[i + 1]
        if token.name != "ASCII_58" or following.start != token.end + 1:
            continue
        if following.name != "IDENT" and following.kind not in _WORD_KINDS:
            continue
        before = tokens[i - 1] if i else None
        if before is not None and before.end + 1 == token.start and before.name in _ATOMS:
            continue
        found.append((token.start, following.end + 1))
    return found


def _substitute(query: str, tokens: list[Any]) -> _Texts:
    """Each parameter becomes ` $n ` to parse and ` %(name)s ` to execute (spaces keep tokens apart)."""
    parse: list[str] = []
    execute: list[str] = []
    origins: list[int] = []
    names: list[str] = []
    position = 0
    for start, end in parameters(tokens):
        chunk = query[position:start]
        parse.append(chunk)
        execute.append(chunk.replace("%", "%%"))
        origins.extend(range(position, start))
        name = query[start + 1:end]
        if name not in names:
            names.append(name)
        marker = f" ${names.index(name) + 1} "
        parse.append(marker)
        execute.append(f" %({name})s ")
        origins.extend([start] * len(marker))
        position = end
    parse.append(query[position:])
    execute.append(query[position:].replace("%", "%%"))
    origins.extend(range(position, len(query) + 1))
    return _Texts("".join(parse), "".join(execute), tuple(names), tuple(origins))


# --- the parse tree ---------------------------------------------------------------------


class _Inspection:
    """Walks the statements once, collecting refusals, function calls and operators."""

    def __init__(self, analysis: Analysis, tokens: list[Any]):
        self.analysis = analysis
        self.tokens = tokens
        self.problems: list[Refusal] = []
        self.functions: list[Name] = []
        self.operators: list[Name] = []

    def at(self, parse_position: int | None) -> int | None:
        return self.analysis.original(parse_position if parse_position is not None and parse_position >= 0 else None)

    def refuse(self, message: str, parse_position: int | None = None) -> None:
        self.problems.append(Refusal(message, self.at(parse_position)))

    def statements(self, statements: tuple[ast.RawStmt, ...]) -> None:
        if not statements:
            self.refuse(f"{KIND}; the query is empty")
            return
        if len(statements) > 1:
            second = self._first_token(statements[1])
            self.refuse(f"{KIND}; found {len(statements)} statements", second.start if second else None)
            return
        raw = statements[0]
        if not isinstance(raw.stmt, ast.SelectStmt):
            first = self._first_token(raw)
            self.refuse(f"{KIND}; found {self._keyword(raw, first)}", first.start if first else None)
            return
        self.tree(raw.stmt)

    def _first_token(self, raw: ast.RawStmt) -> Any:
        """The statement's first token (its location may include the blanks after the previous `;`)."""
        start = raw.stmt_location or 0
        return next((t for t in self.tokens if t.start >= start and not t.name.endswith("COMMENT")), None)

    def _keyword(self, raw: ast.RawStmt, first: Any) -> str:
        kind = type(raw.stmt).__name__
        if kind in _STATEMENTS:
            return _STATEMENTS[kind]
        if first is None:
            return kind.removesuffix("Stmt").upper()
        return self.analysis.parse_text[first.start:first.end + 1].upper()

    def tree(self, root: ast.Node) -> None:
        skip: set[int] = set()
        for node in _walk(root, skip):
            handler = getattr(self, f"_{type(node).__name__}", None)
            if handler is not None:
                handler(node, skip)
            elif type(node).__name__.endswith("Stmt") and not isinstance(node, ast.SelectStmt):
                self.refuse(f"{KIND}; found {_STATEMENTS.get(type(node).__name__, type(node).__name__)} inside it")

    def _SelectStmt(self, node: ast.SelectStmt, skip: set[int]) -> None:
        if node.intoClause is not None:
            rel = node.intoClause.rel
            self.refuse("SELECT INTO creates a table; an SQL check only reads", getattr(rel, "location", None))
        for clause in node.lockingClause or ():
            words = _LOCKS.get(clause.strength.name, "FOR UPDATE")
            self.refuse(f"SELECT ... {words} locks rows; an SQL check only reads", self._lock_position())

    def _lock_position(self) -> int | None:
        pairs = zip(self.tokens, self.tokens[1:])
        return next((a.start for a, b in pairs if (a.name, b.name) in _LOCK_WORDS), None)

    def _CommonTableExpr(self, node: ast.CommonTableExpr, skip: set[int]) -> None:
        query = node.ctequery
        if query is not None and not isinstance(query, ast.SelectStmt):
            verb = _MODIFYING.get(type(query).__name__, type(query).__name__)
            self.refuse(f"found a data-modifying WITH ({verb}); an SQL check only reads", node.location)
            skip.add(id(query))

    def _FuncCall(self, node: ast.FuncCall, skip: set[int]) -> None:
        self.functions.append(Name(_strings(node.funcname), self.at(node.location)))

    def _A_Expr(self, node: ast.A_Expr, skip: set[int]) -> None:
        if node.kind.name in _BETWEEN:
            self._operator(("<=",), node.location)
            self._operator((">=",), node.location)
        self._operator(_strings(node.name), node.location)

    def _SubLink(self, node: ast.SubLink, skip: set[int]) -> None:
        if node.operName:
            self._operator(_strings(node.operName), node.location)
        elif node.subLinkType.name == "ANY_SUBLINK":
            self._operator(("=",), node.location)

    def _SortBy(self, node: ast.SortBy, skip: set[int]) -> None:
        if node.useOp:
            self._operator(_strings(node.useOp), node.location)

    def _CaseExpr(self, node: ast.CaseExpr, skip: set[int]) -> None:
        if node.arg is not None:
            self._operator(("=",), node.location)

    def _operator(self, parts: tuple[str, ...], location: int | None) -> None:
        if parts and set(parts[-1]) <= _OPERATOR_CHARS:
            self.operators.append(Name(parts, self.at(location)))


def _strings(nodes: tuple[ast.Node, ...] | None) -> tuple[str, ...]:
    return tuple(n.sval for n in nodes or () if isinstance(n, ast.String))


def _walk(root: ast.Node, skip: set[int]) -> Iterator[ast.Node]:
    """Every node under `root`, parents before children; nodes whose id is in `skip` are not entered."""
    stack: list[Any] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Node):
            if id(item) in skip:
                continue
            yield item
            stack.extend(reversed([getattr(item, slot, None) for slot in item.__slots__]))
        elif isinstance(item, tuple):
            stack.extend(reversed(item))
