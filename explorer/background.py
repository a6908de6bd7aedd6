"""Work longer than a page should wait for, run in a thread of the server and shared by every
session: thirty students asking for the same computation start it once, and each page shows a
progress bar, stays usable meanwhile, and draws the result when it is ready.

`start(key, work, total)` runs `work(job)` once per key; work reports its steps with job.step()
and returns the result. Work that reports no steps (t-SNE and UMAP, in explorer.maps) gives
expected_s instead, and its progress is the time spent against the time expected. Finished jobs
are kept (the oldest forgotten past _MAX_JOBS), failed ones too: a failed job starts again only
when asked with retry=True. Every job's thread gives way (GIVE_WAY, a nice value): the server's
threads that draw pages then go first whenever both want a core.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

_LOCK = threading.Lock()
_JOBS: dict = {}
_MAX_JOBS = 64
GIVE_WAY = 10           # the nice value a job's thread adds to its own (give_way)


@dataclass
class Job:
    key: tuple
    total: int
    steps: int = 0
    started: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: Optional[str] = None
    expected_s: Optional[float] = None    # for work that reports no steps: how long it should take
    nice: int = 0                         # how far its thread gives way to the threads running pages
    where: str = ""                       # where the work runs, when not in this thread (for the page)

    def step(self) -> None:
        self.steps += 1

    def progress(self) -> float:
        """Steps done over steps in all (or, with expected_s, the time spent over the time
        expected), in [0, 0.99] until the job has finished; then 1.0."""
        if self.done.is_set():
            return 1.0
        if self.expected_s is not None:
            return min(0.99, (time.monotonic() - self.started) / max(self.expected_s, 1e-3))
        return min(0.99, self.steps / max(self.total, 1))

    def seconds_left(self) -> Optional[float]:
        """From the time expected, or the pace of the steps done so far; None before the first
        step and once done."""
        if self.done.is_set():
            return None
        if self.expected_s is not None:
            return max(0.0, self.expected_s - (time.monotonic() - self.started))
        if self.steps == 0:
            return None
        return (time.monotonic() - self.started) / self.steps * (self.total - self.steps)


def give_way(nice: int = GIVE_WAY) -> None:
    """Raise the calling thread's nice value by `nice` (at most 19), so that the server's other
    threads (those that run pages) go first when both want a core. Linux gives each thread its own
    nice value, and threads this one starts inherit it; elsewhere nothing changes."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + int(nice)))
    except (AttributeError, OSError):
        pass


def _run(job: Job, work: Callable[[Job], Any]) -> None:
    if job.nice > 0:
        give_way(job.nice)
    try:
        job.result = work(job)
    except Exception as e:          # noqa: BLE001 - the page shows it; the server carries on
        job.error = f"{type(e).__name__}: {e}"
    finally:
        job.done.set()


def find(key: tuple) -> Optional[Job]:
    """The job for key, running or finished, or None: never starts one."""
    with _LOCK:
        return _JOBS.get(key)


def start(key: tuple, work: Callable[[Job], Any], total: int = 0, retry: bool = False,
          expected_s: Optional[float] = None, nice: Optional[int] = None) -> Job:
    """The job for key: found running or finished (a failed one too, so that pages show its
    error instead of starting it again on every rerun), or started now; retry=True starts a
    failed one again (a "Try again" button). total: the steps work will report; expected_s:
    the seconds it should take, for work that reports none; nice: how far its thread gives way to
    the threads that run pages (give_way), GIVE_WAY unless given."""
    with _LOCK:
        job = _JOBS.get(key)
        if job is not None and (job.error is None or not retry):
            return job
        finished = [k for k, j in _JOBS.items() if j.done.is_set()]
        for k in finished[:max(0, len(_JOBS) - _MAX_JOBS + 1)]:
            del _JOBS[k]
        job = _JOBS[key] = Job(key, int(total), expected_s=expected_s,
                                  nice=max(0, int(GIVE_WAY if nice is None else nice)))
    threading.Thread(target=_run, args=(job, work), name=f"background-{key[0]}", daemon=True).start()
    return job
