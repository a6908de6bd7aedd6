"""explorer.background: one job per key shared by every caller, real progress, a failure that
does not stick."""
import threading

from explorer import background


def test_one_job_per_key_runs_once_and_reports_its_steps():
    release, calls = threading.Event(), []

    def work(job):
        calls.append(1)
        job.step()
        release.wait(10)
        job.step()
        return "result"

    a = background.start(("test-shared", 1), work, total=2)
    b = background.start(("test-shared", 1), work, total=2)       # a second session asks the same
    assert a is b
    for _ in range(200):
        if a.steps == 1:
            break
        threading.Event().wait(0.01)
    assert not a.done.is_set() and a.progress() == 0.5 and a.seconds_left() is not None
    release.set()
    assert a.done.wait(10) and a.result == "result" and a.error is None and a.progress() == 1.0
    assert calls == [1]
    assert background.start(("test-shared", 1), work, total=2) is a            # finished: kept


def test_a_failed_job_reports_its_error_and_starts_again_only_when_asked():
    attempts = []

    def work(job):
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("disk full")
        return 42

    first = background.start(("test-fails",), work, total=1)
    assert first.done.wait(10) and first.error == "OSError: disk full" and first.result is None
    assert background.start(("test-fails",), work, total=1) is first    # a page's rerun: no loop
    assert len(attempts) == 1
    second = background.start(("test-fails",), work, total=1, retry=True)
    assert second is not first and second.done.wait(10) and second.result == 42


def test_work_without_steps_reports_progress_from_the_time_it_should_take():
    import time
    release = threading.Event()
    job = background.start(("test-timed", 1), lambda j: release.wait(10) and "map", expected_s=60.0)
    assert background.find(("test-timed", 1)) is job and background.find(("test-timed", 2)) is None
    assert 0 <= job.progress() < 0.1 and 50 < job.seconds_left() <= 60
    release.set()
    assert job.done.wait(10) and job.result == "map" and job.progress() == 1.0 and job.seconds_left() is None
    # Halfway through the time expected, and late: jobs started 1 s and 5 s ago, expecting 2 s.
    halfway = background.Job(("k",), 0, expected_s=2.0, started=time.monotonic() - 1.0)
    assert abs(halfway.progress() - 0.5) < 0.05 and abs(halfway.seconds_left() - 1.0) < 0.1
    late = background.Job(("k",), 0, expected_s=2.0, started=time.monotonic() - 5.0)
    assert late.progress() == 0.99 and late.seconds_left() == 0.0    # never claims to be done


def test_work_nobody_waits_for_gives_way_to_the_threads_that_run_pages():
    """Linux gives each thread its own nice value: a job started with nice runs that much nicer
    than the thread that started it (and so than the server's page threads); one without, the same."""
    import os
    import sys

    import pytest
    if not sys.platform.startswith("linux"):
        pytest.skip("a thread's own nice value is Linux's")
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    here = lambda job: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())  # noqa: E731
    niced = background.start(("test-nice", 1), here, nice=7)
    plain = background.start(("test-nice", 2), here, nice=0)
    assert niced.done.wait(10) and plain.done.wait(10)
    assert (niced.nice, niced.result) == (7, min(19, mine + 7))
    assert (plain.nice, plain.result) == (0, mine)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine     # the caller's stays


def test_a_new_map_gives_way_to_the_threads_that_run_pages(tmp_path):
    """explorer.maps: a new t-SNE map computes in a thread that gives way (bench/bench_map_nice.py:
    at the pages' priority, two 10,000-code maps held other pages' work up to 1.3 s)."""
    import numpy as np

    from explorer import maps
    codes = np.random.default_rng(0).normal(size=(120, 4)).astype(np.float32)
    job = maps.start(("test-map", 1), codes, "tsne", 1, tmp_path / "a", "k")
    assert job.nice == background.GIVE_WAY > 0
    assert job.done.wait(120) and job.error is None and job.result.shape == (120, 2)
