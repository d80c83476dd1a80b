"""The server's side of a run: poll /runtime of the variants, probe the loaded target's /healthz
as a bystander, keep both series, judge each poll, write them as CSV.

No Locust and no Flask here (server_locust.py wires it into Locust, server_tab.py into its web
UI), so the tests drive it with real threads. Under Locust, threading and sockets are gevent's:
every thread below is a greenlet and the HTTP calls never block the users.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3

from loadtest.generator.verdict import decide

POLL_EVERY_S = 1.0
POLL_TIMEOUT_S = 2.5  # no answer by then: the loop is blocked (uvloop answers after its queue)
PROBE_EVERY_S = 0.2  # 5 bystander requests per second: light, yet a p99 within seconds
PROBE_TIMEOUT_S = 10.0
UNFINISHED = "unfinished at stop"  # a probe still waiting when the run stopped
KEEP_S = 30 * 60  # memory bound of the series; a headless CSV of a longer run loses its start
RECENT_S = 10.0  # the window of the bystander's "now" percentiles
# A poll with no answer is judged with the latest answer no older than this (CPU or a wait?)
LAST_ANSWER_S = 10.0

SERVER_COLUMNS = (
    "wall", "t", "variant", "target", "ok", "timed_out", "poll_ms", "loop_lag_ms",
    "threadpool_borrowed", "threadpool_total", "db_in_use", "db_waiting", "db_max", "in_flight",
    "executor_queued", "cpu_pct", "children_cpu_pct", "rss_mb", "threads", "generator_cpu_pct",
    "verdict_kind", "verdict",
)  # fmt: skip
BYSTANDER_COLUMNS = ("wall", "t", "latency_ms", "status", "error")


def _get(data: Mapping[str, Any] | None, *path: str) -> float | None:
    value: Any = data
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _cell(value: float | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if math.isfinite(value) else ""
    return str(value)


@dataclass(frozen=True)
class Poll:
    """One /runtime poll of one variant."""

    wall: float  # epoch seconds when sent
    t: float  # seconds since the watch started
    variant: str
    target: bool  # the variant Locust is loading
    ok: bool
    timed_out: bool
    poll_ms: float
    runtime: Mapping[str, Any] | None
    generator_cpu_pct: float | None
    verdict_kind: str
    verdict: str
    rps: float | None = None  # Locust's req/s at the poll: for the chart only, not the CSV
    bystander_p99: float | None = None  # over RECENT_S, on the target only: for the chart

    def value(self, *path: str) -> float | None:
        return _get(self.runtime, *path)

    @property
    def in_flight(self) -> float | None:
        """Requests in the server, less this poll itself (counted by /runtime)."""
        value = self.value("in_flight")
        return None if value is None else max(0.0, value - 1)

    def row(self) -> list[str]:
        values: list[float | str | None] = [
            self.wall, round(self.t, 3), self.variant, int(self.target), int(self.ok),
            int(self.timed_out), round(self.poll_ms, 1), self.value("loop_lag_ms"),
            self.value("threadpool", "borrowed"), self.value("threadpool", "total"),
            self.value("db_pool", "in_use"), self.value("db_pool", "waiting"),
            self.value("db_pool", "max"), self.in_flight, self.value("executor", "queued"),
            self.value("process", "cpu_pct"), self.value("process", "children_cpu_pct"),
            self.value("process", "rss_mb"), self.value("process", "threads"),
            self.generator_cpu_pct, self.verdict_kind, self.verdict,
        ]  # fmt: skip
        return [_cell(v) for v in values]


@dataclass(frozen=True)
class Probe:
    """One bystander request: latency from send to the full response."""

    wall: float
    t: float
    latency_ms: float  # also for failures: the time until it failed
    status: int | None  # None: no response (timeout or connection error)
    error: str

    @property
    def counted(self) -> bool:
        """In the percentiles: answered, or still waiting at the timeout or at the stop (its
        latency is then a lower bound, and leaving it out would hide the worst waits)."""
        return self.status is not None or self.error in ("timeout", UNFINISHED)

    def row(self) -> list[str]:
        return [_cell(self.wall), _cell(round(self.t, 3)), _cell(round(self.latency_ms, 2)),
                _cell(self.status), self.error]  # fmt: skip


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Watched:
    """One polled URL: its label (a variant name) and what was seen."""

    url: str
    variant: str
    target: bool
    provisional: bool  # labelled from the URL only: /runtime's own `variant` will name it
    polls: deque[Poll]
    peak_lag_ms: float = 0.0
    peak_in_flight: float = 0.0
    peak_cpu_pct: float = 0.0


class Watch:
    """Polls and probes from start() to stop(); read the results at any time."""

    def __init__(
        self,
        targets: Mapping[str, str],
        loaded_url: str,
        *,
        poll_all: bool = True,
        generator_cpu: Callable[[], float | None] = lambda: None,
        rps: Callable[[], float | None] = lambda: None,
        poll_every_s: float = POLL_EVERY_S,
        poll_timeout_s: float = POLL_TIMEOUT_S,
        probe_every_s: float = PROBE_EVERY_S,
        probe_timeout_s: float = PROBE_TIMEOUT_S,
    ) -> None:
        loaded_url = loaded_url.rstrip("/")
        by_url = {url.rstrip("/"): variant for variant, url in targets.items()}
        urls = dict(by_url) if poll_all else {}
        urls.setdefault(loaded_url, by_url.get(loaded_url, "host"))
        keep = int(KEEP_S / poll_every_s) + 5
        self.loaded_url = loaded_url
        self.watched = {
            url: Watched(url, label, url == loaded_url, url not in by_url, deque(maxlen=keep))
            for url, label in urls.items()
        }
        self.probes: deque[Probe] = deque(maxlen=int(KEEP_S / probe_every_s) + 50)
        self.peak_bystander_p99: float | None = None
        self._generator_cpu, self._rps = generator_cpu, rps
        self._poll_every, self._poll_timeout = poll_every_s, poll_timeout_s
        self._probe_every, self._probe_timeout = probe_every_s, probe_timeout_s
        # Never retried, never redirected: a retry would hide the very wait being measured.
        # Non-blocking pool: a slow server gets extra connections rather than queued probes.
        self._http = urllib3.PoolManager(maxsize=64, block=False, retries=False)
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[float, float, float]] = {}  # probes waiting: sent at
        self._tokens = itertools.count()
        self._stopped = threading.Event()
        self.started_wall = time.time()
        self._started = time.perf_counter()

    # --- running -----------------------------------------------------------------------------

    def start(self) -> None:
        self.started_wall, self._started = time.time(), time.perf_counter()
        for loop in (self._poll_loop, self._probe_loop):
            threading.Thread(target=loop, daemon=True, name=f"server-watch{loop.__name__}").start()

    def stop(self) -> None:
        """Stop sending. Probes still waiting become rows now: on a blocked server they are
        the slowest ones, and the CSV is written right after the stop."""
        self._stopped.set()
        now = time.perf_counter()
        with self._lock:
            for wall, t, sent in self._pending.values():
                self.probes.append(Probe(wall, t, (now - sent) * 1000, None, UNFINISHED))
            self._pending.clear()

    @property
    def running(self) -> bool:
        return not self._stopped.is_set()

    def _every(self, seconds: float, action: Callable[[], object]) -> None:
        """`action` in its own thread every `seconds`, at a fixed rate (a slow answer never
        delays the next send: the bystander is an open-loop client)."""
        ticks = 0
        while not self._stopped.is_set():
            threading.Thread(target=action, daemon=True).start()
            ticks += 1
            delay = self._started + ticks * seconds - time.perf_counter()
            if self._stopped.wait(max(0.0, delay)):
                return

    def _poll_loop(self) -> None:
        def poll_all() -> None:
            for watched in list(self.watched.values()):
                threading.Thread(target=self.poll, args=(watched,), daemon=True).start()

        self._every(self._poll_every, poll_all)

    def _probe_loop(self) -> None:
        self._every(self._probe_every, self.probe)

    def _since(self) -> tuple[float, float, float]:
        sent = time.perf_counter()
        return time.time(), sent - self._started, sent

    # --- one poll, one probe -----------------------------------------------------------------

    def poll(self, watched: Watched) -> Poll:
        wall, t, sent = self._since()
        runtime: dict[str, Any] | None = None
        timed_out = False
        try:
            response = self._http.request(
                "GET", f"{watched.url}/runtime", timeout=self._poll_timeout, redirect=False
            )
            if response.status == 200:
                answer = json.loads(response.data)
                runtime = answer if isinstance(answer, dict) else None
        except urllib3.exceptions.NewConnectionError:
            pass  # refused: a ConnectTimeoutError subclass in urllib3 2, but no wait at all
        except urllib3.exceptions.TimeoutError:
            timed_out = True
        except (urllib3.exceptions.HTTPError, OSError, ValueError):
            pass
        poll_ms = (time.perf_counter() - sent) * 1000
        generator_cpu = self._generator_cpu()
        with self._lock:  # the latest answer, if recent: what the server was doing before
            last = next((p for p in reversed(watched.polls) if p.runtime is not None), None)
        recent = last.runtime if last is not None and wall - last.wall < LAST_ANSWER_S else None
        timeout = self._poll_timeout if timed_out else None
        verdict = decide(runtime, generator_cpu, timeout, last_answer=recent)
        with self._lock:
            if watched.provisional and runtime and isinstance(runtime.get("variant"), str):
                watched.variant, watched.provisional = self._label(runtime["variant"]), False
            p99 = self._recent_bystander()[1] if watched.target else None
            if p99 is not None:
                self.peak_bystander_p99 = max(self.peak_bystander_p99 or 0.0, p99)
            poll = Poll(
                wall, t, watched.variant, watched.target, runtime is not None, timed_out,
                poll_ms, runtime, generator_cpu, verdict.kind, verdict.line,
                self._rps() if watched.target else None, p99,
            )  # fmt: skip
            watched.polls.append(poll)
            lag = poll.value("loop_lag_ms") or (poll_ms if timed_out else 0.0)
            watched.peak_lag_ms = max(watched.peak_lag_ms, lag)
            watched.peak_in_flight = max(watched.peak_in_flight, poll.in_flight or 0.0)
            watched.peak_cpu_pct = max(watched.peak_cpu_pct, poll.value("process", "cpu_pct") or 0)
        return poll

    def _label(self, variant: str) -> str:
        """A --host's label: the variant its /runtime names, unless a listed URL has it."""
        taken = {w.variant for w in self.watched.values() if not w.provisional}
        return variant if variant not in taken else f"{variant} (host)"

    def probe(self) -> Probe:
        wall, t, sent = self._since()
        status: int | None = None
        error = ""
        with self._lock:
            token = next(self._tokens)
            self._pending[token] = (wall, t, sent)
        try:
            response = self._http.request(
                "GET", f"{self.loaded_url}/healthz", timeout=self._probe_timeout, redirect=False
            )
            status = response.status
        except urllib3.exceptions.TimeoutError as exc:
            # a refused connection is a ConnectTimeoutError subclass in urllib3 2: not a wait
            refused = isinstance(exc, urllib3.exceptions.NewConnectionError)
            error = f"refused: {exc}"[:200] if refused else "timeout"
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
        probe = Probe(wall, t, (time.perf_counter() - sent) * 1000, status, error)
        with self._lock:
            if self._pending.pop(token, None) is not None:  # else stop() has recorded it
                self.probes.append(probe)
        return probe

    # --- reading -----------------------------------------------------------------------------

    def _recent_bystander(self, window_s: float = RECENT_S) -> tuple[float | None, float | None]:
        """p50 and p99 (ms) of the probes sent in the last `window_s` seconds and of those
        still waiting, counted with their wait so far (call locked): on a blocked server no
        probe of the last seconds has come back yet, and they are what a bystander feels."""
        since, now = time.time() - window_s, time.perf_counter()
        recent = [p.latency_ms for p in self.probes if p.wall >= since and p.counted]
        recent += [(now - sent) * 1000 for _, _, sent in self._pending.values()]
        return percentile(recent, 0.5), percentile(recent, 0.99)

    def recent_bystander(self, window_s: float = RECENT_S) -> tuple[float | None, float | None]:
        with self._lock:
            return self._recent_bystander(window_s)

    def snapshot(self) -> tuple[list[Watched], list[Probe]]:
        """Consistent copies: every watched URL with its polls, and the probes."""
        with self._lock:
            watched = [
                Watched(w.url, w.variant, w.target, w.provisional, deque(w.polls),
                        w.peak_lag_ms, w.peak_in_flight, w.peak_cpu_pct)
                for w in self.watched.values()
            ]  # fmt: skip
            return watched, list(self.probes)

    def server_csv(self) -> str:
        watched, _ = self.snapshot()
        polls = sorted((p for w in watched for p in w.polls), key=lambda p: (p.wall, p.variant))
        return _csv(SERVER_COLUMNS, (p.row() for p in polls))

    def bystander_csv(self) -> str:
        _, probes = self.snapshot()
        return _csv(BYSTANDER_COLUMNS, (p.row() for p in sorted(probes, key=lambda p: p.wall)))

    def write_csv(self, prefix: str | Path) -> tuple[Path, Path]:
        """PREFIX_server.csv and PREFIX_bystander.csv, next to Locust's own --csv files."""
        server, bystander = Path(f"{prefix}_server.csv"), Path(f"{prefix}_bystander.csv")
        server.parent.mkdir(parents=True, exist_ok=True)
        server.write_text(self.server_csv())
        bystander.write_text(self.bystander_csv())
        return server, bystander


def _csv(columns: Iterable[str], rows: Iterable[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue()
