"""A DayRunner for tests: records every call with the clock's time, and can be slow or fail on request.

`make_runner(config, clock)` is the factory the real service loads through `OPENING_BELL_RUNNER` in
subprocess tests; there each call is also a log line, which is how the test follows the service.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from daemon.clock import Clock
from daemon.config import Config
from daemon.days import DayPlan
from daemon.logs import get_logger


@dataclass
class Call:
    step: str
    day: date | None
    start: datetime
    end: datetime | None = None


@dataclass
class RecordingRunner:
    """`takes` makes a step last that many (fake) seconds; `fails` makes a step raise after recording itself.

    `fire` waits for the open and then for the window's end, as the real one does. `track` says everything is
    final after `track_beats` beats (None: never, so tracking runs to the close); `finals` notes each beat's flag.
    """

    config: Config
    clock: Clock
    takes: dict[str, float] = field(default_factory=dict)
    fails: set[str] = field(default_factory=set)
    log_calls: bool = False
    calls: list[Call] = field(default_factory=list)
    track_beats: int | None = None
    finals: list[bool] = field(default_factory=list)

    async def _step(self, step: str, plan: DayPlan | None, until: list[datetime] | None = None) -> None:
        call = Call(step, plan.day if plan else None, self.clock.now())
        self.calls.append(call)
        if self.log_calls:
            get_logger("test-runner").info(f"test runner {step} started", day=str(call.day))
        if step in self.takes:
            await self.clock.sleep_until(call.start + timedelta(seconds=self.takes[step]))
        if step in self.fails:
            raise RuntimeError(f"{step} broke\non purpose")
        for moment in until or []:
            await self.clock.sleep_until(moment)
        call.end = self.clock.now()
        if self.log_calls:
            get_logger("test-runner").info(f"test runner {step} finished", day=str(call.day))

    async def warmup(self, plan: DayPlan) -> None:
        await self._step("warmup", plan)

    async def refresh(self, plan: DayPlan) -> None:
        await self._step("refresh", plan)

    async def arm(self, plan: DayPlan) -> None:
        await self._step("arm", plan)

    async def fire(self, plan: DayPlan) -> None:
        await self._step("fire", plan, until=[plan.open, plan.window_end])

    async def report(self, plan: DayPlan) -> None:
        await self._step("report", plan)

    async def track(self, plan: DayPlan, final: bool) -> bool:
        await self._step("track", plan)
        self.finals.append(final)
        return self.track_beats is not None and len(self.finals) >= self.track_beats

    async def aclose(self) -> None:
        await self._step("aclose", None)

    def of(self, step: str) -> list[Call]:
        return [call for call in self.calls if call.step == step]

    def days(self, step: str) -> list[date | None]:
        return [call.day for call in self.of(step)]


def make_runner(config: Config, clock: Clock) -> RecordingRunner:
    """For `OPENING_BELL_RUNNER=tests.doubles:make_runner`; `TEST_RUNNER_FAILS=warmup,fire` makes steps raise."""
    fails = {step for step in os.environ.get("TEST_RUNNER_FAILS", "").split(",") if step}
    return RecordingRunner(config, clock, fails=fails, log_calls=True)
