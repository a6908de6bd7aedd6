"""Start-up: app.py is the server (st.App) whose start-up hook warms the app in a thread, and
router.py the script every session runs."""
import ast
import time
from pathlib import Path

from streamlit.web.server.app_discovery import discover_asgi_app

REPO = Path(__file__).resolve().parent.parent


def test_app_py_is_an_st_app_serving_router_py_with_a_start_up_hook():
    found = discover_asgi_app(REPO / "app.py")
    assert found.is_asgi_app and found.app_name == "app"
    call = next(n.value for n in ast.walk(ast.parse((REPO / "app.py").read_text()))
                if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "app" for t in n.targets))
    assert ast.literal_eval(call.args[0]) == "router.py" and (REPO / "router.py").is_file()
    assert [k.arg for k in call.keywords] == ["lifespan", "middleware"]


def _get(app, path: str, method: str = "GET"):
    """Run one HTTP request through the ASGI app `app`; returns (status, headers, body)."""
    import asyncio
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "headers": [],
             "http_version": "1.1", "scheme": "http", "server": ("test", 80), "root_path": ""}
    # In its own thread: a browser test's Playwright may hold an event loop in this one.
    import threading
    worker = threading.Thread(target=lambda: asyncio.run(app(scope, receive, send)))
    worker.start()
    worker.join()
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in sent
                                                             if m["type"] == "http.response.body")


def test_a_page_opened_by_its_address_starts_loading_plotly_in_its_head_and_nothing_else_changes(monkeypatch):
    """app.py's middleware: a page's address gets Streamlit's index.html with the server's root
    (the address less the page's name) and the plotly.js tag in its head (the static copy of plotly exists in the repo, and static serving is on); the home
    page, Streamlit's own routes, files and other methods reach Streamlit untouched."""
    import streamlit as st
    import importlib.util
    spec = importlib.util.spec_from_file_location("vae_app_py", REPO / "app.py")
    app_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app_py)
    serving = {"on": True}                                      # as .streamlit/config.toml sets it
    get_option = st.get_option
    monkeypatch.setattr(st, "get_option", lambda key: serving["on"] if key == "server.enableStaticServing"
                        else get_option(key))

    async def streamlit_itself(scope, receive, send):
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"streamlit"})

    early = app_py._PlotlyEarly(streamlit_itself)
    for path in ["/Latent_map", "/Compare_beta"]:
        status, headers, body = _get(early, path)
        assert status == 200 and headers[b"cache-control"] == b"no-cache"
        html = body.decode()
        head = html.split("</head>")[0]
        assert '"vae-plotly"' in head and 'rel="preload"' in head and "/app/static/plotly-" in head
        index = (Path(st.__file__).parent / "static" / "index.html").read_text(encoding="utf-8")
        added = head[len(index.split("</head>")[0]):]
        assert html.replace(added, "", 1) == index                  # only the tags added
        base, plotly_tag = added.split("</script>", 1)
        assert base.startswith("<script>") and "window.__streamlit = {BACKEND_BASE_URL:" in base
        assert f'=== "{path[1:]}")' in base                           # the page's name, as the server saw it
        assert plotly_tag.startswith("<link")
        name = head.split("/app/static/")[1].split('"')[0]
        assert (REPO / "static" / name).is_file(), name
    tag = _get(early, "/a<b")[2].decode().split("</head>")[0]         # a name is data, never a tag
    assert '=== "a\\u003cb")' in tag and "a<b" not in tag
    for path in ["/", "/favicon.png", "/_stcore/health", "/app/static/x.js", "/media/abc"]:
        assert _get(early, path) == (299, {}, b"streamlit"), path
    assert _get(early, "/Latent_map", method="POST") == (299, {}, b"streamlit")
    serving["on"] = False
    assert _get(app_py._PlotlyEarly(streamlit_itself), "/Latent_map") == (299, {}, b"streamlit")  # no tag to load


def test_the_warm_up_runs_every_step_on_a_checkpoint_folder(app_env):
    from explorer import models, warm
    took = warm.warm(time.perf_counter())
    assert set(took) == {"imports", "model list", "default pair", "test images", "home reconstructions"}
    assert all(v >= 0 for v in took.values())


def test_a_warm_up_that_fails_costs_only_speed_and_says_so(monkeypatch, capsys):
    from explorer import warm

    def broken(started):
        raise OSError("no such folder")

    monkeypatch.setattr(warm, "warm", broken)
    warm.run(time.perf_counter())                    # no exception reaches the server
    assert "start-up warm-up failed (OSError: no such folder)" in capsys.readouterr().err


def test_a_view_that_fails_to_warm_leaves_the_others_warmed_and_says_so(app_env, monkeypatch, capsys):
    from explorer import arithmetic, fewlabels, warm

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fewlabels, "warm", broken)
    monkeypatch.setattr(arithmetic, "warm", lambda *a, **k: None)
    took = warm.warm_views()
    assert took["few labels, default pair"] == "failed (OSError: disk full)"
    assert isinstance(took["latent arithmetic, default pair"], float)
    monkeypatch.setattr(warm, "warm_views", broken)
    warm._run_views(0.0)                             # no exception leaves the thread
    assert "start-up warm-up of the views failed (OSError: disk full)" in capsys.readouterr().err


def test_the_views_are_not_warmed_when_asked_not_to(monkeypatch):
    import threading

    from explorer import warm
    monkeypatch.setattr(warm, "warm", lambda started: {"imports": 0.0})
    monkeypatch.setenv("VAE_WARM_VIEWS", "0")
    before = threading.active_count()
    warm.run(time.perf_counter())
    assert threading.active_count() == before


def test_the_views_are_warmed_for_every_shipped_model_not_only_the_pairs(app_env, tmp_path, monkeypatch):
    import shutil

    import vae_core.latent
    from browser_support import add_beta_member
    from explorer import fewlabels as fx
    from explorer import models, warm
    folder = tmp_path / "checkpoints"
    shutil.copytree(app_env, folder)
    add_beta_member(folder, 4.0)
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(folder))
    from explorer import arithmetic, posterior
    for cached in (fx.split_codes, fx.code_curve, arithmetic.population, posterior.explain):
        cached.clear()                  # shared by the whole test process: start from nothing
    took = warm.warm_views()
    assert isinstance(took["few labels, mnist-d2-vae-b4"], float), took
    assert isinstance(took["latent arithmetic, mnist-d2-vae-b4"], float), took
    assert isinstance(took["true posterior, mnist-d2-vae-b4"], float), took
    assert isinstance(took["true posterior, default pair"], float), took
    assert not any("failed" in str(v) for v in took.values()), took
    # Its Few labels curve is now read from the cache: nothing is encoded or measured again.
    calls = []
    monkeypatch.setattr(vae_core.latent, "encode_data", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(fx.fl, "accuracy_curve", lambda *a, **k: calls.append("curve"))
    ckpt = models.load_model(str(folder / "mnist-d2-vae-b4.safetensors"))
    stamp = fx.data_stamp("mnist")
    ns = tuple(fx.fl.available_ns(fx.few_split("mnist", stamp).pool_y))
    fx.code_curve(ckpt, models.ckpt_key(ckpt), "mnist", stamp, ns, False)
    assert calls == []
    # Its True posterior opens on an image already integrated.
    import vae_core.exact
    from explorer import posterior
    monkeypatch.setattr(vae_core.exact, "explain", lambda *a, **k: calls.append("explain"))
    labels = models.labels("mnist")
    posterior.explain(ckpt, models.ckpt_key(ckpt), "mnist", posterior.image_of(labels, posterior.DEFAULT_CLASS, 0))
    assert calls == []


def test_the_views_warm_up_only_while_no_page_runs(monkeypatch):
    """A step waits while a page or fragment runs (explorer.timing.busy) and starts once the
    server has been quiet for QUIET_S."""
    import threading

    from explorer import timing, warm
    started = threading.Event()
    release = threading.Event()

    def a_page():
        with timing.busy():
            started.set()
            release.wait(10)

    page = threading.Thread(target=a_page)
    page.start()
    started.wait(5)
    waiter = threading.Thread(target=warm.wait_for_quiet, args=(0.3, 0.02))
    waiter.start()
    waiter.join(1.0)
    assert waiter.is_alive()                  # a page runs: the warm-up waits
    t_end = time.monotonic()
    release.set()
    page.join()
    waiter.join(5)
    assert not waiter.is_alive()
    assert time.monotonic() - t_end >= 0.3    # and goes on only after 0.3 s of quiet
    assert timing.quiet_for() >= 0.3
