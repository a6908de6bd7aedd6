"""explorer/charts.py: the Latent map's own plotly component, its plotly.js and its fallback.
(A click in a real browser: tests/test_browser.py.)"""
import json
from pathlib import Path

import numpy as np
import plotly
import pytest
from streamlit import config

from explorer import figures, charts
from chart_support import chart_spec as plotly_spec
from test_app_explorer import run_page

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def a_map(shift: float = 0.0):
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(50, 2)) + shift
    return figures.scatter_codes(xy, rng.integers(0, 10, 50), [str(i) for i in range(10)], title="m")


def test_plotly_js_is_copied_once_from_the_installed_plotly(tmp_path, monkeypatch):
    monkeypatch.setattr(charts, "STATIC_DIR", tmp_path / "static")
    assert charts.install_plotly_js()
    served = tmp_path / "static" / charts.PLOTLY_JS
    assert served.read_bytes() == PLOTLY_JS.read_bytes()
    assert plotly.__version__ in served.name          # a new plotly gets a new name, so browsers reload it
    mtime = served.stat().st_mtime_ns
    assert charts.install_plotly_js() and served.stat().st_mtime_ns == mtime    # not copied again
    assert not list((tmp_path / "static").glob("*.part"))


def test_a_static_folder_that_cannot_be_written_leaves_the_maps_to_st_plotly_chart(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    monkeypatch.setattr(charts, "STATIC_DIR", blocker / "static")
    assert charts.install_plotly_js() is False


def test_the_browser_moves_only_the_ring_when_nothing_else_changed():
    fig = a_map()
    plain = charts.figure_payload(fig)
    ringed = charts.figure_payload(a_map().add_shape(charts.ring(0.5, -0.5, "image 3")))
    assert ringed["base"] == plain["base"]            # same dots: a relayout of the shapes will do
    assert json.loads(ringed["figure"])["layout"]["shapes"][0]["name"] == "image 3"
    assert charts.figure_payload(a_map(shift=1.0))["base"] != plain["base"]    # new dots: redraw
    assert charts.figure_payload(a_map().update_layout(title="n"))["base"] != plain["base"]


def test_the_ring_is_a_fixed_size_circle_on_the_picked_code():
    ring = charts.ring(1.25, -2.0, "image 7")
    assert (ring["xanchor"], ring["yanchor"]) == (1.25, -2.0)
    assert ring["xsizemode"] == ring["ysizemode"] == "pixel" and ring["x1"] - ring["x0"] == 20


@pytest.mark.parametrize("static_serving", [True, False])
def test_the_latent_map_draws_its_maps_with_or_without_static_serving(app_env, static_serving):
    before = config.get_option("server.enableStaticServing")
    config.set_option("server.enableStaticServing", static_serving)
    try:
        at = run_page("app_pages/1_Latent_map.py")
        at.session_state["map_picked"] = 4
        at.run()
        kinds = {el.type for el in at.get("bidi_component") + at.get("plotly_chart")}
        assert kinds == ({"bidi_component"} if static_serving else {"plotly_chart"})
        for key in ("map_chart_VAE", "map_chart_AE"):
            spec = plotly_spec(at, key)
            assert [s["name"] for s in spec["layout"]["shapes"]] == ["image 4"]
            assert any(t.get("customdata") is not None for t in spec["data"])     # clickable dots
    finally:
        config.set_option("server.enableStaticServing", before)
