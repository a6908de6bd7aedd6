"""VAE Latent Explorer: run with `streamlit run app.py`.

This file is the server; router.py is the script each visitor's session runs (the page menu).
Streamlit's `st.App` gives the server a start-up hook: as soon as it listens, a thread imports
the heavy libraries (PyTorch, plotly, pandas) and loads what the home page shows first, so the
first visitor does not wait for them (explorer/warm.py). It also sets OPENBLAS_NUM_THREADS=1,
which running router.py directly (or AppTest) does not.
"""
import os

# NumPy's OpenBLAS runs one thread per call. Several sessions' work already fills the cores, and
# UMAP calls it from inside numba's OpenMP loops, where a threaded OpenBLAS warns that it "may
# hang" (two maps side by side printed dozens of such warnings). Set before NumPy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import threading  # noqa: E402
import time  # noqa: E402
from contextlib import asynccontextmanager  # noqa: E402

import streamlit as st  # noqa: E402


def _warm() -> None:
    started = time.perf_counter()
    from explorer import warm  # noqa: PLC0415 - importing `explorer` imports PyTorch: in this thread, not the server's
    warm.run(started)


@asynccontextmanager
async def lifespan(_app):
    threading.Thread(target=_warm, name="start-up-warm", daemon=True).start()
    yield


app = st.App("router.py", lifespan=lifespan)
