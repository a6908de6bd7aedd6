"""The Latent arithmetic page under Streamlit's AppTest on tiny models with the shipped names."""
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:          # the page imports `explorer` from the repository root
    sys.path.insert(0, str(REPO))

from streamlit.testing.v1 import AppTest  # noqa: E402

from chart_support import chart_spec as chart  # noqa: E402


PAGE = "app_pages/9_Latent_arithmetic.py"



def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def run_page(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(REPO / PAGE), default_timeout=120)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    no_errors(at)
    return at


def ys(spec: dict) -> list:
    import base64
    out = []
    for t in spec["data"]:
        y = t["y"]
        out.append(np.frombuffer(base64.b64decode(y["bdata"]), dtype=np.dtype(y["dtype"]))
                   if isinstance(y, dict) else np.asarray(y, dtype=float))
    return out


def strip(at: AppTest) -> str:
    """The strip of every α (figures.show_mosaic draws it as an SVG picture): pixels and labels."""
    (svg,) = [im.proto.imgs[0].url for im in at.image if im.proto.imgs[0].url.startswith("data:image/svg+xml")]
    return svg


def row(at: AppTest) -> list:
    """The pictures of the slider's row: the original, then each model's decoded image."""
    return [im for im in at.image if not im.proto.imgs[0].url.startswith("data:image/svg+xml")]


def shown(at: AppTest) -> list:
    """The decoded images in the slider's row (after the original): their pixels, comparable."""
    return [list(im.value) for im in row(at)[1:]]


def test_the_page_runs_on_the_default_models(app_env):
    at = run_page()
    assert at.session_state["sel_vae"] == "mnist-d2-vae-b1"
    assert at.markdown[0].value.startswith("**Notice:**") and "ink" in at.markdown[0].value
    assert any(r"\mathrm{ink}(x) = " in l.value for l in at.latex)
    assert [im.captions[0].split(",")[0] for im in row(at)] == ["original: image 1 (a 2)", "VAE", "AE"]
    # The strip's middle column is α = 0: the image's own code, one of the codes v was made from.
    dist = ys(chart(at, "arith_dist"))
    assert [len(d) for d in dist] == [9, 9]
    assert all(abs(d[4]) < 1e-3 for d in dist) and all(d[0] > 0.5 and d[-1] > 0.5 for d in dist), dist
    # The ink of the strip's images, and the mean over held-out test images, are curves over α.
    assert [len(s) for s in ys(chart(at, "arith_score"))] == [9, 9]
    assert [len(s) for s in ys(chart(at, "arith_pop_score"))] == [9, 9]
    assert st_query(at)["arith_vec"] == "thicker"


def st_query(at: AppTest) -> dict:
    return {k: at.query_params[k] for k in at.query_params}


@pytest.mark.parametrize("kind, text", [("slant", r"\mathrm{slant}(x) = \mu_{11} / \mu_{02}"),
                                        ("class", r"y = \text{3}")])
def test_each_vector_choice_runs_and_shows_its_equation(app_env, kind, text):
    at = run_page()
    before = strip(at)
    at.segmented_control(key="arith_vec").set_value(kind).run()
    no_errors(at)
    assert any(text in l.value for l in at.latex), [l.value for l in at.latex]
    assert strip(at) != before
    if kind == "class":
        assert row(at)[0].captions[0] == "original: image 0 (a 7)"      # an image of class a
        at.selectbox(key="arith_to").set_value(8).run()
        no_errors(at)
        assert any(r"y = \text{8}" in l.value for l in at.latex)


def test_moving_alpha_changes_the_decoded_images(app_env):
    at = run_page()
    at.slider(key="arith_alpha").set_value(0.0).run()
    no_errors(at)
    at_zero = shown(at)
    assert all("0.0× typical gap" in im.captions[0] for im in row(at)[1:])   # its own code
    at.slider(key="arith_alpha").set_value(-2.0).run()
    no_errors(at)
    assert shown(at) != at_zero
    assert all("α = -2" in im.captions[0] for im in row(at)[1:])
    assert at.session_state["arith_shown_alpha"] == -2.0


def test_the_view_comes_back_from_its_address(app_env):
    at = run_page({"arith_vec": "class", "arith_from": "1", "arith_to": "8", "arith_k": "2",
                   "arith_alpha": "-0.5"})
    assert at.session_state["arith_vec"] == "class"
    assert (at.session_state["arith_from"], at.session_state["arith_to"]) == (1, 8)
    assert at.session_state["arith_alpha"] == -0.5
    assert "(a 1)" in row(at)[0].captions[0]
    assert any(r"y = \text{8}" in l.value for l in at.latex)


def test_the_start_up_warm_up_leaves_the_page_nothing_to_compute(app_env, monkeypatch):
    """explorer.warm.warm_views fills the very caches the page reads: after it, each vector on its
    default image, on the default pair and on the larger pair its button offers, decodes nothing new."""
    import streamlit as st

    from explorer import warm
    from vae_core import attributes
    st.cache_data.clear()
    st.cache_resource.clear()
    calls = []
    for name in ("sweep", "effect"):
        real = getattr(attributes, name)
        monkeypatch.setattr(attributes, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    took = warm.warm_views()
    assert {"latent arithmetic, default pair", "latent arithmetic, larger pair"} <= set(took)
    assert calls.count("sweep") >= 2 * 3 * 2 and calls.count("effect") >= 2 * 3 * 2
    calls.clear()
    at = run_page()
    for kind in ("slant", "class", "thicker"):
        at.segmented_control(key="arith_vec").set_value(kind).run()
        no_errors(at)
    at.button(key="arith_use_big").click().run()
    no_errors(at)
    assert at.session_state["sel_vae"] != "mnist-d2-vae-b1"         # the larger pair is on screen
    at.segmented_control(key="arith_vec").set_value("class").run()
    no_errors(at)
    assert calls == []
