"""Turning command-line arguments (files, directories, globs) into scenario files."""

from __future__ import annotations

import glob
from pathlib import Path

from runner.errors import InputError

SUFFIXES = (".yaml", ".yml")
PARTIAL_PREFIX = "_"
"""Files named `_*.yaml` are partials for `extends:`; a directory scan skips them."""


def scenario_files(arguments: list[str]) -> list[str]:
    """Files named, found under directories (recursively) or matched by globs, in order, once each."""
    found: list[str] = []
    for argument in arguments:
        found.extend(_expand(argument))
    unique = list(dict.fromkeys(found))
    if not unique:
        raise InputError("no scenario files found in: " + ", ".join(arguments))
    return unique


def _expand(argument: str) -> list[str]:
    path = Path(argument)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()
                       and not p.name.startswith(PARTIAL_PREFIX))
        if not files:
            raise InputError(f"{argument}: directory holds no *.yaml or *.yml files")
        return [str(p) for p in files]
    if path.exists():
        return [argument]
    if glob.has_magic(argument):
        matches = sorted(glob.glob(argument, recursive=True))
        files = [m for m in matches if Path(m).is_file()]
        if not files:
            raise InputError(f"{argument}: pattern matches no files")
        return files
    raise InputError(f"{argument}: no such file or directory")
