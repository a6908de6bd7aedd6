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
    assert [k.arg for k in call.keywords] == ["lifespan"]


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
