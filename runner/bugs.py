"""Turning an unexpected exception into one honest line and a traceback file.

A bug must never look like a pass, and a user must not have to read a traceback to learn
that ye-run (not their scenario or database) failed; whoever fixes it needs the traceback.
"""

from __future__ import annotations

import os
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path

from runner.errors import InternalError

ENV_DIR = "YE_CRASH_DIR"


def crash_dir() -> Path:
    """`$YE_CRASH_DIR`, else `<user cache>/ye-run/crashes`."""
    override = os.environ.get(ENV_DIR)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return platformdirs.user_cache_path("ye-run") / "crashes"


def record(exc: BaseException, where: str = "") -> InternalError:
    """Write the traceback to a file; the InternalError says what broke and where the file is."""
    text = "".join(traceback.format_exception(exc))
    stamp = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}"
    path = _write(text, f"crash-{stamp}-{os.getpid()}.txt")
    summary = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    what = f"{type(exc).__name__}: {summary}" if summary else type(exc).__name__
    place = f" while {where}" if where else ""
    saved = f"traceback in {path}" if path else "the traceback could not be saved"
    return InternalError(f"internal error (a bug in ye-run){place}: {what}; {saved}; please report it")


def _write(text: str, name: str) -> Path | None:
    for folder in (crash_dir(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None
