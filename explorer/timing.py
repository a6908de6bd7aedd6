"""Slider views as Streamlit fragments that can report how long each run took, and the server's
idle time.

`fragment` is `st.fragment`; with the environment variable VAE_LOG_RERUNS=1 every run of the
view also prints `rerun <view> <ms>` on the server's stderr, and `run_page` does the same for a
whole page's run (`rerun page:<path> <ms>`). bench/bench_app.py and bench/bench_load.py read these
lines to time the server's side of a slider move or a page visit without counting the browser.

Every page run and every run of a fragment a person moved is also counted (`busy`; not the runs of
views that refresh themselves every second or so while a job computes): `quiet_for()` says how
long the server has run none, so that work nobody waits for (explorer.warm) keeps to the gaps.
"""
from __future__ import annotations

import functools
import os
import sys
import threading
import time
from contextlib import contextmanager, nullcontext

import streamlit as st

_lock = threading.Lock()
_running = 0
_last_end = 0.0


@contextmanager
def busy():
    """Count a page or fragment run while it lasts (quiet_for)."""
    global _running, _last_end
    with _lock:
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            _last_end = time.monotonic()


def quiet_for() -> float:
    """Seconds since the last page or fragment run ended; 0.0 while one runs."""
    with _lock:
        return 0.0 if _running else time.monotonic() - _last_end


def fragment(fn=None, *, run_every=None):
    """st.fragment(fn, run_every=...), counted (busy, unless it refreshes itself) and timed when
    VAE_LOG_RERUNS=1; usable with or without ()."""
    if fn is None:
        return functools.partial(fragment, run_every=run_every)
    log = os.environ.get("VAE_LOG_RERUNS") == "1"
    count = busy if run_every is None else nullcontext

    @functools.wraps(fn)
    def counted(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            with count():
                return fn(*args, **kwargs)
        finally:
            if log:
                print(f"rerun {fn.__name__} {(time.perf_counter() - t0) * 1e3:.1f}", file=sys.stderr, flush=True)

    return st.fragment(counted, run_every=run_every)


def run_page(page) -> None:
    """Run the page st.navigation picked, counted (busy); timed like the fragments when
    VAE_LOG_RERUNS=1."""
    t0 = time.perf_counter()
    try:
        with busy():
            page.run()
    finally:
        if os.environ.get("VAE_LOG_RERUNS") == "1":
            print(f"rerun page:{page.url_path or 'home'} {(time.perf_counter() - t0) * 1e3:.1f}",
                  file=sys.stderr, flush=True)
