"""The engine's notion of now: the system clock, or a manual one tests move (``POINTCAST_MANUAL_CLOCK``)."""

from __future__ import annotations

from datetime import UTC, datetime


class Clock:
    """``now()`` is real time unless the clock was set; a set clock stays where it was put until moved."""

    def __init__(self, manual: bool = False) -> None:
        self.manual = manual
        self._frozen: datetime | None = None

    def now(self) -> datetime:
        return self._frozen if self._frozen is not None else datetime.now(UTC)

    def set(self, moment: datetime) -> None:
        if not self.manual:
            raise RuntimeError("the clock is the system clock; start with POINTCAST_MANUAL_CLOCK=true to move it")
        self._frozen = moment.astimezone(UTC)
