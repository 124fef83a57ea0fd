"""The notify triggers' payload, parsed in one place."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import NamedTuple

log = logging.getLogger("ye_run.observe")


class Notified(NamedTuple):
    """One notification: which row, of which job, what kind ('v' variant, 'j' job), its state and database time."""

    row_id: str
    job_id: str
    kind: str
    step: str
    status: str
    db_time: datetime | None


def parse(payload: str, job_channel: bool) -> Notified | None:
    """The payload of `job_variant_state_changed` (or, with `job_channel`, `job_state_changed`); None when it
    is not one (logged: the trigger is someone else's, and a malformed payload must not stop a run)."""
    try:
        data = json.loads(payload)
        job_id = str(data["job_id"])
        row_id = job_id if job_channel else str(data["job_variants_id"])
        step, status = str(data["current_step"]), str(data["status"])
    except (ValueError, KeyError, TypeError):
        log.warning("observer: ignoring a malformed notification: %.200s", payload)
        return None
    stamp = data.get("updated_at")
    try:
        db_time = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        db_time = None
    return Notified(row_id, job_id, "j" if job_channel else "v", step, status, db_time)
