"""VAE Latent Explorer: run with `streamlit run app.py`.

This file is the server; router.py is the script each visitor's session runs (the page menu).
Streamlit's `st.App` gives the server a start-up hook: as soon as it listens, a thread imports
the heavy libraries (PyTorch, plotly, pandas) and loads what the home page shows first, so the
first visitor does not wait for them (explorer/warm.py). Nothing else differs from running
router.py directly.
"""
import threading
import time
from contextlib import asynccontextmanager

import streamlit as st


def _warm() -> None:
    started = time.perf_counter()
    from explorer import warm  # noqa: PLC0415 - importing `explorer` imports PyTorch: in this thread, not the server's
    warm.run(started)


@asynccontextmanager
async def lifespan(_app):
    threading.Thread(target=_warm, name="start-up-warm", daemon=True).start()
    yield


app = st.App("router.py", lifespan=lifespan)
