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

import json  # noqa: E402
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


# plotly.js (4.6 MB, explorer/charts.py) takes a quarter of a second to load and run even from the
# browser's cache, and a chart cannot draw before it has. A page opened by its address (a link, a
# reload) would start it only when its first chart arrives, after the whole front end has started
# and the page's script has run. So every page but Home (which has no plotly chart) is served
# with a script tag for it in its head: the browser then loads it beside Streamlit's own bundle,
# and runs it while the server runs the page. charts.py's loader waits for that tag's script
# rather than loading it twice, and loads it itself where the tag is not there or failed.
_PLOTLY_TAG = ('<link rel="preload" as="script" href="./app/static/{name}"><script>'
               'addEventListener("DOMContentLoaded", () => requestIdleCallback(() => {{'
               'if (window.Plotly || document.getElementById("vae-plotly")) return;'
               'const s = document.createElement("script"); s.id = "vae-plotly"; s.src = "./app/static/{name}";'
               's.onload = s.onerror = () => {{ s.dataset.done = 1; }}; document.head.appendChild(s);'
               '}}, {{timeout: 2000}}));</script>')


# Streamlit's front end does not know where its server's root is: on a page's address
# (/Interpolation) it first tries the address itself (/Interpolation/_stcore/health and
# host-config, two 404s) and only then the folder above it, which costs every open by address a
# round trip before the websocket can open (about 0.1 s on a quiet machine, more beside a
# training). Its documented window.__streamlit.BACKEND_BASE_URL names the root instead: the
# address less the page's name, which the server saw (so a proxy that serves the app under a
# prefix of its own keeps working). Where the address does not end with that name, nothing is set
# and the front end searches as before.
_BASE_TAG = ('<script>(() => {{ const p = location.pathname.replace(/\\/+$/, ""), i = p.lastIndexOf("/");'
             'if (!window.__streamlit && decodeURIComponent(p.slice(i + 1)) === {page})'
             ' window.__streamlit = {{BACKEND_BASE_URL: location.origin + p.slice(0, i + 1)}}; }})();</script>')
_BASE_MARK = "<!-- vae: the server's root -->"


class _PlotlyEarly:
    """ASGI middleware: a page's address (one path segment, no dot, not Streamlit's `_...`) gets
    Streamlit's index.html with _BASE_TAG and _PLOTLY_TAG in its head, once the app's copy of
    plotly.js exists and static serving is on. Everything else passes through untouched."""

    def __init__(self, app):
        self.app = app
        self._html = None

    def _page(self):
        if self._html is not None:       # built once: neither the option nor the file goes away
            return self._html
        from importlib.metadata import version  # noqa: PLC0415
        from pathlib import Path  # noqa: PLC0415
        name = f"plotly-{version('plotly')}.min.js"     # explorer/charts.py's PLOTLY_JS
        if not st.get_option("server.enableStaticServing") or \
                not (Path(__file__).parent / "static" / name).is_file():
            return None
        html = (Path(st.__file__).parent / "static" / "index.html").read_text(encoding="utf-8")
        if "</head>" not in html:
            return None
        self._html = html.replace("</head>", _BASE_MARK + _PLOTLY_TAG.format(name=name) + "</head>", 1)
        return self._html

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope.get("method") == "GET" and path.count("/") == 1 and len(path) > 1 and "." not in path \
                and not path.startswith("/_"):
            html = self._page()
            if html is not None:
                page = json.dumps(path[1:]).replace("<", "\\u003c")     # never a tag inside the script
                body = html.replace(_BASE_MARK, _BASE_TAG.format(page=page), 1).encode()
                from starlette.responses import Response  # noqa: PLC0415
                await Response(body, media_type="text/html", headers={"Cache-Control": "no-cache"})(
                    scope, receive, send)
                return
        await self.app(scope, receive, send)


def _middleware():
    from starlette.middleware import Middleware  # noqa: PLC0415
    return [Middleware(_PlotlyEarly)]


app = st.App("router.py", lifespan=lifespan, middleware=_middleware())
