"""Load shapes: a step ramp (capacity search) and a spike, loaded next to the users:

    locust --config loadtest/locust.conf -f loadtest/locustfile.py,loadtest/shapes.py

Kept out of locustfile.py on purpose: Locust runs the first shape it finds in the loaded files,
also headless, and then ignores -u/-r/-t. Here a shape runs only when this file is listed; the
web UI's class picker (on in locust.conf, and in `make lab`) then offers "Default" (the users
and spawn rate typed in the form) or one of these. Headless, the first shape is used (StepRamp);
LAB_SHAPE=Spike (or StepRamp) keeps only that one. A shape ends the run after its last stage.
The users are not imported here: list both files instead (loadtest/shapes.py re-exports these).

Parameters are custom arguments, so they show up in the web UI too:
  --step-users 50      StepRamp: users added at each step (started within about a second)
  --step-seconds 30    StepRamp: how long each step holds; Spike: how long each phase lasts
  --max-users 400      StepRamp: the last step; Spike: users during the spike
  --baseline-users 20  Spike: users before and after the spike
"""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass

from locust import LoadTestShape, events
from locust.argument_parser import LocustArgumentParser

from loadtest.generator.hooks import listen

SHAPES = ("StepRamp", "Spike")
ONLY = os.environ.get("LAB_SHAPE", "")
if ONLY not in ("", *SHAPES):
    raise ValueError(f"LAB_SHAPE: expected one of {', '.join(SHAPES)}, got {ONLY!r}")


def _arguments(parser: LocustArgumentParser) -> None:
    parser.add_argument("--step-users", type=int, default=50, help="StepRamp: users per step")
    parser.add_argument(
        "--step-seconds", type=int, default=30, help="StepRamp: seconds per step; Spike: per phase"
    )
    parser.add_argument(
        "--max-users", type=int, default=400, help="StepRamp: last step; Spike: users in the spike"
    )
    parser.add_argument(
        "--baseline-users", type=int, default=20, help="Spike: users before and after the spike"
    )


listen(events.init_command_line_parser, _arguments)


@dataclass(frozen=True)
class Stage:
    until: float  # seconds since the start of the run when this stage ends
    users: int
    spawn_rate: float  # users started (or stopped) per second to get there


def step_ramp_stages(step_users: int, step_seconds: float, max_users: int) -> list[Stage]:
    """step_users, 2*step_users, ... up to max_users (the last step may be smaller), each held
    for step_seconds and reached within about a second."""
    step, top, hold = max(1, step_users), max(1, max_users), max(1, step_seconds)
    counts = [*range(step, top, step), top]
    return [Stage(hold * (i + 1), users, step) for i, users in enumerate(counts)]


def spike_stages(baseline_users: int, peak_users: int, phase_seconds: float) -> list[Stage]:
    """baseline, then peak_users within about a second, then back to baseline: three phases."""
    base, peak, phase = max(0, baseline_users), max(1, peak_users), max(1, phase_seconds)
    rate = max(1, base, peak)
    return [Stage(phase, base, rate), Stage(2 * phase, peak, rate), Stage(3 * phase, base, rate)]


def stage_at(stages: list[Stage], run_time: float) -> Stage | None:
    """The stage running at run_time; None once the last one has ended (the run stops)."""
    return next((stage for stage in stages if run_time < stage.until), None)


class StagedShape(LoadTestShape):
    """tick() follows `stages(options)`, computed from the current custom arguments on every
    tick, so values edited in the web UI apply to the next run."""

    abstract = True

    def stages(self, options: Namespace) -> list[Stage]:
        raise NotImplementedError

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        options = self.runner.environment.parsed_options
        assert options is not None  # set before any run starts
        run_time: Callable[[], float] = self.get_run_time
        stage = stage_at(self.stages(options), run_time())
        return None if stage is None else (stage.users, stage.spawn_rate)


class StepRamp(StagedShape):
    """Capacity search: +step_users every step_seconds up to max_users, then stop. Read the
    step where latency bends upward or failures appear (the stats history / charts)."""

    abstract = ONLY not in ("", "StepRamp")

    def stages(self, options: Namespace) -> list[Stage]:
        return step_ramp_stages(options.step_users, options.step_seconds, options.max_users)


class Spike(StagedShape):
    """baseline_users, a sudden jump to max_users, back to baseline_users; step_seconds each.
    Shows how a variant absorbs a burst and whether it recovers (latency back to baseline)."""

    abstract = ONLY not in ("", "Spike")

    def stages(self, options: Namespace) -> list[Stage]:
        return spike_stages(options.baseline_users, options.max_users, options.step_seconds)
