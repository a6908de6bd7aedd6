"""Slider views as Streamlit fragments that can report how long each run took.

`fragment` is `st.fragment`; with the environment variable VAE_LOG_RERUNS=1 every run of the
view also prints `rerun <view> <ms>` on the server's stderr, and `run_page` does the same for a
whole page's run (`rerun page:<path> <ms>`). bench/bench_app.py and bench/bench_load.py read these
lines to time the server's side of a slider move or a page visit without counting the browser.
"""
from __future__ import annotations

import functools
import os
import sys
import time

import streamlit as st


def fragment(fn=None, *, run_every=None):
    """st.fragment(fn, run_every=...), timed when VAE_LOG_RERUNS=1; usable with or without ()."""
    if fn is None:
        return functools.partial(fragment, run_every=run_every)
    if os.environ.get("VAE_LOG_RERUNS") != "1":
        return st.fragment(fn, run_every=run_every)

    @functools.wraps(fn)
    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            print(f"rerun {fn.__name__} {(time.perf_counter() - t0) * 1e3:.1f}", file=sys.stderr, flush=True)

    return st.fragment(timed, run_every=run_every)


def run_page(page) -> None:
    """Run the page st.navigation picked; timed like the fragments when VAE_LOG_RERUNS=1."""
    if os.environ.get("VAE_LOG_RERUNS") != "1":
        page.run()
        return
    t0 = time.perf_counter()
    try:
        page.run()
    finally:
        print(f"rerun page:{page.url_path or 'home'} {(time.perf_counter() - t0) * 1e3:.1f}",
              file=sys.stderr, flush=True)
