"""When to create the next job: once, wait_for_completion, or interval (with a cap in flight)."""

from __future__ import annotations

from runner.scenario.model import Mode


class JobSchedule:
    def __init__(self, mode: Mode, start: float):
        self.mode = mode
        self.start = start
        self.created = 0
        self.delayed = 0
        self._next_at = start
        self._delay_counted = False

    def _within_limits(self, at: float) -> bool:
        limit = self.mode.job_limit
        if limit is not None and self.created >= limit:
            return False
        return self.mode.duration is None or at - self.start < self.mode.duration

    def due(self, now: float, in_flight: int) -> bool:
        """Whether a job should be created now."""
        if self.mode.type == "once":
            return self.created == 0
        if self.mode.type == "wait_for_completion":
            return in_flight == 0 and self._within_limits(now)
        if now < self._next_at or not self._within_limits(self._next_at):
            return False
        if in_flight >= self.mode.max_in_flight:
            if not self._delay_counted:
                self.delayed += 1
                self._delay_counted = True
            return False
        return True

    def created_one(self, now: float) -> None:
        self.created += 1
        self._delay_counted = False
        if self.mode.type == "interval":
            grid = self.start + self.created * self.mode.interval
            self._next_at = grid if grid >= now else now + self.mode.interval

    def exhausted(self, now: float) -> bool:
        """No more jobs will be created."""
        if self.mode.type == "once":
            return self.created >= 1
        at = now if self.mode.type == "wait_for_completion" else self._next_at
        return not self._within_limits(at)

    def next_time(self, now: float) -> float | None:
        """When creation might next become due (for the loop's wake-up), if it depends on time."""
        if self.mode.type != "interval" or self.exhausted(now):
            return None
        return self._next_at
