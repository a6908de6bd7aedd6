"""The Few labels page runs under AppTest on tiny models, and its slider, its link and its
standardise switch change what it shows."""
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:          # the pages import `explorer` from the repository root
    sys.path.insert(0, str(REPO))

from streamlit.testing.v1 import AppTest  # noqa: E402

from chart_support import chart_spec as spec  # noqa: E402


PAGE = str(REPO / "app_pages" / "11_Few_labels.py")



def has_training_images() -> bool:
    from vae_core.data import data_dir
    return (data_dir("mnist") / "train-labels-idx1-ubyte.gz").is_file()


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def notice(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Notice:**"))


def marked_n(fig: dict) -> float:
    """Where the dotted rule of the chosen n stands on the accuracy chart (its x axis is log10 n)."""
    return round(10 ** next(s["x0"] for s in fig["layout"]["shapes"] if s.get("type") == "line"), 6)


def test_page_runs_and_the_slider_moves_the_figures(app_env):
    at = run(AppTest.from_file(PAGE, default_timeout=120))
    slider = at.select_slider(key="few_n")
    assert slider.value == 10
    fig = spec(at, "few_curve")
    names = [t.get("name") for t in fig["data"] if t.get("showlegend") is not False]
    assert len(names) == 4 and names[0].startswith("VAE") and names[-1].startswith("pixels")
    assert marked_n(fig) == 10
    before, text = json.dumps(spec(at, "few_family")), notice(at)
    assert "with 10 labelled images per class" in text
    slider.set_value(100).run()
    assert not at.exception
    assert marked_n(spec(at, "few_curve")) == 100
    assert json.dumps(spec(at, "few_family")) != before
    assert "with 100 labelled images per class" in notice(at) and notice(at) != text
    assert at.query_params["few_n"] == "100"


def test_a_link_sets_the_number_of_labels(app_env):
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["few_n"] = "1"
    run(at)
    assert at.select_slider(key="few_n").value == 1
    assert "with 1 labelled image per class" in notice(at)


def test_without_training_images_the_slider_stops_where_the_data_do(app_env, tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "no-data"))
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["few_n"] = "1000"                 # a link made where the training images were
    run(at)
    slider = at.select_slider(key="few_n")
    assert list(slider.options) == ["1", "10", "100"]
    assert slider.value == 10
    assert any("stops at 100" in i.value and "not on this server" in i.value for i in at.info)


@pytest.mark.skipif(not has_training_images(), reason="the MNIST training images are not on this machine")
def test_with_training_images_a_thousand_labels_per_class_are_offered(app_env):
    at = run(AppTest.from_file(PAGE, default_timeout=120))
    assert list(at.select_slider(key="few_n").options) == ["1", "10", "100", "1000"]
    assert not any("stops at" in i.value for i in at.info)


def test_standardising_changes_the_numbers(app_env):
    at = run(AppTest.from_file(PAGE, default_timeout=120))
    raw = spec(at, "few_curve")["data"]
    at.checkbox(key="few_std").check().run()
    assert not at.exception
    std = spec(at, "few_curve")["data"]
    assert json.dumps(raw) != json.dumps(std)
    assert at.query_params["few_std"] == "True"


def test_the_start_up_warm_up_leaves_the_page_nothing_to_compute(app_env, monkeypatch):
    """explorer.warm.warm_views fills the very caches the page reads: after it, the page on its
    defaults, standardised, and on the larger pair its button offers draws no new curve."""
    import streamlit as st

    from explorer import warm
    from vae_core import fewlabels as fl
    st.cache_data.clear()
    st.cache_resource.clear()
    calls = []
    real = fl.accuracy_curve
    monkeypatch.setattr(fl, "accuracy_curve", lambda *a, **k: calls.append(1) or real(*a, **k))
    took = warm.warm_views()
    assert {"few labels, default pair", "few labels, larger pair",
            "few labels standardised, default pair"} <= set(took)
    assert len(calls) >= 3 * 3                  # pixels, PCA and the VAE's codes, at least, each time
    calls.clear()
    at = run(AppTest.from_file(PAGE, default_timeout=120))
    assert any("(2-D)" in n for n in legend(at))
    at.checkbox(key="few_std").check()
    run(at)
    assert at.checkbox(key="few_std").value
    at.checkbox(key="few_std").uncheck()
    run(at)
    at.button(key="few_use_big").click()
    run(at)
    assert any("(20-D)" in n for n in legend(at))          # the larger pair is on screen
    assert calls == []


def legend(at: AppTest) -> list:
    return [t.get("name") or "" for t in spec(at, "few_curve")["data"] if t.get("showlegend") is not False]


def test_the_notice_counts_the_points_between_the_percentages_it_shows(app_env):
    import re
    at = run(AppTest.from_file(PAGE, default_timeout=120))
    for n in (1, 10, 100):
        at.select_slider(key="few_n").set_value(n).run()
        text = notice(at)
        vae, pixels = (int(v) for v in re.search(r"gets (\d+) % .* against (\d+) % on the\s+raw pixels", text).groups())
        gap = re.search(r"by (\d+) points", text)
        if gap:                                             # outside the spread of the draws
            assert int(gap.group(1)) == abs(vae - pixels), text


def test_each_model_encodes_the_pool_once_whatever_n_the_slider_asks_for(app_env, monkeypatch, tmp_path):
    """The family chart measures each member at the slider's n only, from codes encoded once per
    model: a new n costs the classifier, not 22,000 more encodings per member."""
    import shutil

    import vae_core.latent
    from browser_support import add_beta_member
    folder = tmp_path / "checkpoints"              # the default pair's family gains a β = 2 member
    shutil.copytree(app_env, folder)
    add_beta_member(folder, 2.0)
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(folder))
    from explorer import fewlabels as fx
    fx.split_codes.clear()              # the server-wide caches: earlier tests filled them
    fx.code_curve.clear()
    calls = []
    real = vae_core.latent.encode_data
    monkeypatch.setattr(vae_core.latent, "encode_data",
                        lambda model, x, *a, **k: calls.append(len(x)) or real(model, x, *a, **k))
    at = run(AppTest.from_file(PAGE, default_timeout=120))
    first = len(calls)
    assert first > 0
    for n in (100, 1, 10):
        at.select_slider(key="few_n").set_value(n).run()
        assert not at.exception
    assert len(spec(at, "few_family")["data"][0]["x"]) == 2          # the family: β = 1 and β = 2
    assert len(calls) == first, calls


def test_the_slider_moves_only_the_accuracy_charts_marks(app_env):
    """The accuracy chart marks n with shapes alone (a rule, a ring per curve): the browser then
    moves them with a relayout instead of drawing the chart again (explorer.charts)."""
    from explorer import charts
    assert charts.available()           # drawn by the app's component, which relayouts shapes alone
    at = run(AppTest.from_file(PAGE, default_timeout=120))
    payload = lambda: json.loads(next(el.proto.json for el in at.get("bidi_component")           # noqa: E731
                                    if el.proto.id.endswith("-few_curve")))
    before = payload()
    at.select_slider(key="few_n").set_value(100).run()
    after = payload()
    assert before["base"] == after["base"] and before["figure"] != after["figure"]
    rings = [s for s in spec(at, "few_curve")["layout"]["shapes"] if s["type"] == "circle"]
    assert len(rings) == 4 and {s["xanchor"] for s in rings} == {2.0}          # log10 of 100
