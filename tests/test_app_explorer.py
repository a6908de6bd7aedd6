"""The explorer pages run under Streamlit's AppTest on tiny models with the shipped names, and
driving their main widgets changes what they show."""
import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:          # the pages import `explorer` from the repository root
    sys.path.insert(0, str(REPO))

from streamlit.testing.v1 import AppTest  # noqa: E402

from chart_support import chart_spec as plotly_spec, charts  # noqa: E402

from vae_core.checkpoints import save_checkpoint  # noqa: E402
from vae_core.config import ModelConfig, TrainConfig  # noqa: E402
from vae_core.models import build_model  # noqa: E402

PAGES = ["router.py", "app_pages/1_Latent_map.py", "app_pages/2_Latent_grid.py", "app_pages/3_Interpolation.py",
         "app_pages/4_Sampling.py"]


# model_dir and app_env: tests/conftest.py.


def run_page(page: str) -> AppTest:
    at = AppTest.from_file(str(REPO / page), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def values(v) -> np.ndarray:
    """A plotly data array from its JSON: a list, or plotly's typed form {dtype, bdata}."""
    if isinstance(v, dict) and "bdata" in v:
        import base64
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v)


def mosaic_svg(at: AppTest, key: str) -> str:
    """The SVG of the mosaic drawn with figures.show_mosaic(..., key): its pixels and labels."""
    import base64
    url = picture_of(at, key)
    assert url.startswith("data:image/svg+xml;base64,"), url[:40]
    return base64.b64decode(url.split(",", 1)[1]).decode("utf-8")


def image_of(at: AppTest, key: str) -> str:
    """The pixels of the mosaic drawn with `key` (the PNG inside its SVG, labels left out), as a
    comparable string."""
    import xml.etree.ElementTree as ET
    (picture,) = ET.fromstring(mosaic_svg(at, key)).iter("{http://www.w3.org/2000/svg}image")
    return picture.get("href")


def svg_text(svg: str, cls: str) -> str:
    """The text of the SVG's element of class `cls` (title, x-title, y-title)."""
    import xml.etree.ElementTree as ET
    return next(t.text for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text") if t.get("class") == cls)


def keyed_block(at: AppTest, key: str):
    """The container made with st.container(key=key), wherever it is on the page."""
    def walk(node):
        for child in getattr(node, "children", {}).values():
            if getattr(child, "key", None) == key:
                return child
            found = walk(child)
            if found is not None:
                return found
        return None
    block = walk(at.main)
    if block is None:
        raise AssertionError(f"no container with key {key!r}")
    return block


def picture_of(at: AppTest, key: str) -> str:
    """The address of the picture (st.image) inside the container `key`: a media file named by the
    picture's bytes, or a data URI (SVG)."""
    (image,) = [c for c in keyed_block(at, key).children.values() if c.type == "image"]
    return image.proto.imgs[0].url


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_on_the_default_models(app_env, page):
    at = run_page(page)
    no_errors(at)
    assert at.session_state["sel_vae"] == "mnist-d2-vae-b1"
    assert at.session_state["sel_ae"] == "mnist-d2-ae"
    # Every page draws a figure: a plotly chart, or (home) pictures.
    assert len(charts(at)) + len(at.get("image")) >= 1


@pytest.mark.parametrize("page", PAGES)
def test_every_page_explains_an_empty_checkpoint_folder(tmp_path, monkeypatch, page):
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("VAE_USER_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("VAE_NO_UMAP_WARMUP", "1")
    at = run_page(page)
    texts = " ".join(w.value for w in at.warning)
    assert "No trained models" in texts and "Train" in texts


def test_the_empty_folder_message_gives_a_command_that_works(tmp_path, monkeypatch):
    """The command the warning suggests, run as written, fills the folder with a pair the app shows."""
    import re
    import shlex

    from vae_core.cli import main
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("VAE_USER_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("VAE_NO_UMAP_WARMUP", "1")
    at = run_page("router.py")
    text = " ".join(w.value for w in at.warning)
    command = re.search(r"`(python -m vae_core [^`]+)`", text).group(1)
    assert str(tmp_path) not in text                  # no server path shown: the variable that sets it
    assert main(shlex.split(os.path.expandvars(command))[3:]) == 0
    at = run_page("router.py")
    no_errors(at)
    assert not any("No trained models" in w.value for w in at.warning)
    assert at.session_state["sel_vae"] == "digits-d2-vae-b1" and at.session_state["sel_ae"] == "digits-d2-ae"


def test_home_shows_other_reconstructions_on_request(app_env):
    at = run_page("router.py")
    # Home draws pictures only: no plotly chart, so a new visitor's first page never waits for
    # plotly's script (router.py sends its hidden preload chart to the other pages only).
    assert not at.get("plotly_chart")
    assert any("ELBO" in l.value for l in at.latex)
    before = picture_of(at, "home_recon")
    assert before.endswith(".png")            # PNG, not JPEG: the row labels stay sharp
    at.button(key="home_shuffle").click().run()
    no_errors(at)
    assert picture_of(at, "home_recon") != before


def test_beta_is_one_when_a_vae_checkpoint_omits_it_and_not_applicable_for_an_ae(app_env):
    from explorer.sidebar import beta_of, describe
    vae = {"name": "v", "model_config": {"kind": "vae", "latent_dim": 2}, "train_config": {}}
    ae = {"name": "a", "model_config": {"kind": "ae", "latent_dim": 2}, "train_config": {"beta": 0.0}}
    assert beta_of(vae) == 1.0 and "β=1" in describe(vae)          # TrainConfig's default
    assert beta_of({**vae, "train_config": {"beta": 4}}) == 4.0
    assert beta_of(ae) is None and "β" not in describe(ae)
    at = run_page("router.py")                                          # the cards say the same
    betas = [line for md in at.markdown for line in md.value.splitlines() if line.startswith("| β |")]
    assert betas == ["| β | **1** |", "| β | **— (AE)** |"]


def test_selection_holds_across_pages_and_a_new_user_model_appears(app_env, tmp_path):
    at = run_page("router.py")
    at.selectbox(key="sb_vae").set_value("mnist-d2-vae-b1").run()
    assert at.selectbox(key="sb_ae").value == "mnist-d2-ae"      # the partner AE follows
    at.switch_page("app_pages/2_Latent_grid.py").run()
    no_errors(at)
    assert at.selectbox(key="sb_vae").value == "mnist-d2-vae-b1"
    assert at.selectbox(key="sb_ae").value == "mnist-d2-ae"
    # A model saved into the user folder (as the Train page does) is offered on the next run.
    model = build_model(ModelConfig(kind="vae", latent_dim=3, hidden=(16,)))
    save_checkpoint(Path(os.environ["VAE_USER_DIR"]) / "my-new-vae", model, TrainConfig(dataset="mnist"),
                    dataset="mnist")
    at.run()
    assert any(o.startswith("my-new-vae") for o in at.selectbox(key="sb_vae").options)


def test_latent_map_responds_to_points_and_shows_bubbles_for_2d(app_env):
    at = run_page("app_pages/1_Latent_map.py")
    # The dots are the traces that carry each image's index (customdata).
    n_before = sum(len(values(t["x"])) for t in plotly_spec(at, "map_chart_VAE")["data"] if "customdata" in t)
    at.select_slider(key="map_n").set_value(500).run()
    no_errors(at)
    n_after = sum(len(values(t["x"])) for t in plotly_spec(at, "map_chart_VAE")["data"] if "customdata" in t)
    assert (n_before, n_after) == (2000, 500)
    at.selectbox(key="sb_vae").set_value("mnist-d20-vae-b1").run()      # a 20-D pair: no bubbles, an offer
    assert not any(t.get("showlegend") is False for t in plotly_spec(at, "map_chart_VAE")["data"])
    at.button(key="use_2d_pair").click().run()
    no_errors(at)
    names = [t.get("name") for t in plotly_spec(at, "map_chart_VAE")["data"]]
    assert "prior 1σ" in names and "prior 2σ" in names
    # ±σ ellipses are line traces without a legend entry, one per class present
    assert sum(1 for t in plotly_spec(at, "map_chart_VAE")["data"] if t.get("showlegend") is False) >= 2
    # Their drawn scale is in the map's own title (a downloaded PNG keeps it) and in the caption.
    title = plotly_spec(at, "map_chart_VAE")["layout"]["title"]["text"]
    caption = next(c.value for c in at.caption if "Each ellipse" in c.value)
    k = int(title.split("ellipses ±")[1].split("σ")[0] or 1)
    assert (f"drawn {k}× its true size" in caption) if k > 1 else ("at its true size" in caption), (title, caption)
    assert "ellipses" not in plotly_spec(at, "map_chart_AE")["layout"]["title"]["text"]


def rerun_until_drawn(at, limit_s: float) -> None:
    """Rerun the page every 0.1 s, as its progress fragment does in a browser, until no progress
    bar shows (a background map has been drawn) or limit_s has passed; then no error shows."""
    import time
    for _ in range(int(limit_s * 10)):
        time.sleep(0.1)
        at.run()
        if not at.get("progress"):
            break
    assert not at.get("progress"), [p.proto.text for p in at.get("progress")]
    no_errors(at)


def test_latent_map_tsne_projection_runs(app_env, monkeypatch):
    at = run_page("app_pages/1_Latent_map.py")
    at.selectbox(key="sb_vae").set_value("mnist-d20-vae-b1").run()       # projections are for d > 2
    at.select_slider(key="map_n").set_value(500).run()
    pca = values(plotly_spec(at, "map_chart_AE")["data"][0]["x"])
    at.segmented_control(key="map_method").set_value("tsne").run()
    # A quick new map (nobody has computed seed 4321): the page waits for it and draws it at once.
    at.number_input(key="map_seed").set_value(4321).run()
    no_errors(at)
    assert not at.get("progress")
    spec = plotly_spec(at, "map_chart_AE")
    assert "for now" not in spec["layout"]["title"]["text"]
    assert spec["layout"]["xaxis"]["title"]["text"] == "t-SNE 1"
    first = values(spec["data"][0]["x"])
    assert first.shape == pca.shape and not np.allclose(first, pca)
    # A map that takes longer than the page waits (here: not at all) computes in the background:
    # meanwhile the map shown before stays, under a progress bar, and the new one follows.
    monkeypatch.setenv("VAE_MAP_WAIT_S", "0")
    at.number_input(key="map_seed").set_value(4322).run()
    no_errors(at)
    assert any("Computing the t-SNE map of 500 codes (seed 4322), " in (p.proto.text or "")   # not elsewhere
               for p in at.get("progress")), [p.proto.text for p in at.get("progress")]
    assert "t-SNE map (seed 4321) for now" in plotly_spec(at, "map_chart_AE")["layout"]["title"]["text"]
    assert np.allclose(values(plotly_spec(at, "map_chart_AE")["data"][0]["x"]), first)
    rerun_until_drawn(at, 60)
    assert plotly_spec(at, "map_chart_AE")["layout"]["xaxis"]["title"]["text"] == "t-SNE 1"
    tsne = values(plotly_spec(at, "map_chart_AE")["data"][0]["x"])
    assert tsne.shape == pca.shape and not np.allclose(tsne, first) and not np.allclose(tsne, pca)
    from explorer import background                 # t-SNE: in the server, in threads that give way
    jobs = [j for k, j in background._JOBS.items() if k[0] == "map" and k[-1] == 4322]
    assert len(jobs) == 2 and all(j.where == "" and j.nice == background.GIVE_WAY and j.error is None for j in jobs)


def test_a_long_umap_map_computes_on_the_training_engine(app_env, monkeypatch):
    """A UMAP map longer than the page waits (here: any) computes on a worker of the training
    engine (the session's real local Ray), not in the server's process, whose pages its layout
    would hold; meanwhile the PCA map stands in under a progress bar that says where it runs."""
    monkeypatch.setenv("VAE_MAP_WAIT_S", "0")
    at = run_page("app_pages/1_Latent_map.py")
    at.selectbox(key="sb_vae").set_value("mnist-d20-vae-b1").run()
    at.select_slider(key="map_n").set_value(500).run()
    at.segmented_control(key="map_method").set_value("umap").run()
    no_errors(at)
    texts = [p.proto.text or "" for p in at.get("progress")]
    if texts:                                       # seed 0 of this pair may be on disk from an earlier test
        assert any("UMAP map of 500 codes (seed 0) on the training engine's workers" in t for t in texts), texts
    at.number_input(key="map_seed").set_value(5322).run()          # a seed nobody has computed
    texts = [p.proto.text or "" for p in at.get("progress")]
    assert any("Computing the UMAP map of 500 codes (seed 5322) on the training engine's workers" in t
               for t in texts), texts
    rerun_until_drawn(at, 120)
    assert plotly_spec(at, "map_chart_AE")["layout"]["xaxis"]["title"]["text"] == "UMAP 1"
    from explorer import background
    jobs = [j for k, j in background._JOBS.items() if k[0] == "map" and k[-1] == 5322]
    assert len(jobs) == 2 and all(j.where == "on the training engine's workers" and j.error is None for j in jobs)


def test_a_map_that_fails_says_so_once_and_is_not_computed_again_on_every_rerun(app_env, monkeypatch):
    from vae_core import projections
    calls = []

    def broken(codes, seed, **params):
        calls.append(seed)
        raise MemoryError("out of memory")

    monkeypatch.setitem(projections._METHODS, "tsne", broken)
    at = run_page("app_pages/1_Latent_map.py")
    at.selectbox(key="sb_vae").set_value("mnist-d20-vae-b1").run()
    at.select_slider(key="map_n").set_value(500).run()
    at.segmented_control(key="map_method").set_value("tsne").run()
    at.number_input(key="map_seed").set_value(7777).run()          # a seed nobody has computed
    for _ in range(3):
        at.run()                                                   # what the page's own reruns do
    errors = [e.value for e in at.error]
    assert any("could not be computed (MemoryError: out of memory)" in e for e in errors), errors
    assert not at.get("progress")
    assert calls.count(7777) == 2      # the new seed: the VAE's and the AE's map, once each (seed 0 may be cached by earlier tests)


def test_grid_changes_with_size_range_and_plane(app_env):
    at = run_page("app_pages/2_Latent_grid.py")
    first = image_of(at, "grid_fig_VAE")
    at.slider(key="grid_n").set_value(5).run()
    no_errors(at)
    small = image_of(at, "grid_fig_VAE")
    assert small != first
    small_ae = image_of(at, "grid_fig_AE")
    at.segmented_control(key="grid_span").set_value("data").run()
    no_errors(at)
    # Each model's mosaic, before and after: the data range covers other codes than the prior's.
    assert image_of(at, "grid_fig_VAE") != small
    assert image_of(at, "grid_fig_AE") != small_ae
    assert "grid_plane" not in [r.key for r in at.radio]          # a 2-D pair: its one plane is the space
    at.selectbox(key="sb_vae").set_value("mnist-d20-vae-b1").run()
    at.radio(key="grid_plane").set_value("pca").run()
    no_errors(at)
    assert plotly_spec(at, "grid_map_VAE")["layout"]["xaxis"]["title"]["text"] == "PC1"


def test_interpolation_slider_moves_the_decoded_images(app_env):
    at = run_page("app_pages/3_Interpolation.py")
    before = list(at.image[1].value) + list(at.image[2].value)
    at.slider(key="interp_t").set_value(0).run()
    no_errors(at)
    after = list(at.image[1].value) + list(at.image[2].value)
    assert before != after
    assert at.get("download_button")[0].key == "interp_walk_png"     # the images shown, as a PNG
    strip = image_of(at, "interp_strip")
    # Slerp alone, with the same number of steps: the arc passes through other codes than the line.
    at.segmented_control(key="interp_method").set_value("slerp").run()
    no_errors(at)
    slerp_strip = image_of(at, "interp_strip")
    assert slerp_strip != strip
    at.slider(key="interp_steps").set_value(5).run()
    no_errors(at)
    assert image_of(at, "interp_strip") != slerp_strip
    dist = plotly_spec(at, "interp_dist")["data"]
    ys = [values(t["y"]) for t in dist]
    assert [len(y) for y in ys] == [5, 5]
    # Endpoints are codes of real images, so their distance to the nearest code is zero.
    assert all(abs(y[0]) < 1e-3 and abs(y[-1]) < 1e-3 for y in ys), ys


def test_interpolation_from_the_map_uses_the_last_two_picks(app_env):
    at = run_page("app_pages/3_Interpolation.py")
    at.session_state["map_picks"] = [5, 9]
    at.segmented_control(key="interp_mode").set_value("map").run()
    no_errors(at)
    captions = " ".join(c for im in at.image for c in im.captions)
    assert "image 5" in captions and "image 9" in captions


def test_sampling_resample_temperature_and_traversal(app_env):
    at = run_page("app_pages/4_Sampling.py")
    s0 = image_of(at, "samp_fig_VAE")
    at.button(key="samp_resample").click().run()
    no_errors(at)
    s1 = image_of(at, "samp_fig_VAE")
    assert s1 != s0
    at.slider(key="samp_temp").set_value(0.3).run()
    assert image_of(at, "samp_fig_VAE") != s1
    t0 = image_of(at, "trav_fig_VAE")
    at.slider(key="trav_range").set_value(1.0).run()
    no_errors(at)
    assert image_of(at, "trav_fig_VAE") != t0
    # Dimensions are offered in order of decreasing KL.
    options = at.selectbox(key="trav_dim").options
    kls = [float(o.split("KL ")[1].split()[0]) for o in options]
    assert kls == sorted(kls, reverse=True)
    # The eight-dimension overview is drawn only when asked for.
    with pytest.raises(AssertionError, match="no container with key 'trav_top'"):
        mosaic_svg(at, "trav_top")
    at.toggle(key="trav_top_on").set_value(True).run()
    no_errors(at)
    assert "data:image/png;base64," in mosaic_svg(at, "trav_top")
    # The overview starts where the single traversal does: from a test image when asked.
    top_origin = image_of(at, "trav_top")
    at.radio(key="trav_base").set_value("image").run()
    at.number_input(key="trav_idx").set_value(3).run()
    no_errors(at)
    assert image_of(at, "trav_top") != top_origin
    assert any("Each row starts from image 3's code" in c.value for c in at.caption)


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_an_uploaded_digit_is_encoded_and_an_empty_one_explained(app_env):
    at = run_page("app_pages/4_Sampling.py")
    img = np.zeros((100, 100), np.uint8)
    img[15:85, 45:58] = 255                       # a "1"
    at.file_uploader(key="draw_upload").set_value(("one.png", _png(img), "image/png")).run()
    no_errors(at)
    captions = " ".join(c for im in at.image for c in im.captions)
    assert "VAE reconstruction" in captions and "AE reconstruction" in captions
    plotly_spec(at, "draw_map_VAE")                # placed on the map
    assert "draw_png" in [b.key for b in at.get("download_button")]
    codes = at.session_state["draw_codes"]
    assert len(codes["VAE"]) == 2 and np.isfinite(codes["AE"]).all()     # the default 2-D pair
    at.file_uploader(key="draw_upload").set_value(("black.png", _png(np.zeros((50, 50), np.uint8)), "image/png")).run()
    no_errors(at)
    assert any("empty" in w.value for w in at.warning)


def test_latent_map_shows_a_picked_image_with_both_reconstructions(app_env):
    at = run_page("app_pages/1_Latent_map.py")
    assert not at.image                               # nothing picked yet: a hint instead
    assert "map_pick_png" not in [b.key for b in at.get("download_button")]
    at.session_state["map_picked"] = 7                # what a click on a dot stores
    at.run()
    no_errors(at)
    assert "map_pick_png" in [b.key for b in at.get("download_button")]
    captions = [c for im in at.image for c in im.captions]
    assert any("test image 7" in c for c in captions)
    assert any("VAE reconstruction" in c for c in captions) and any("AE reconstruction" in c for c in captions)
    assert at.session_state["map_picks"][-1] == 7     # offered to the interpolation page
    assert at.query_params["map_picked"] == "7"       # and in the view's link
    import re
    posterior = next(c.value for c in at.caption if c.value.startswith("VAE posterior"))
    assert re.fullmatch(r"VAE posterior: μ = \(−?\d+\.\d\d, −?\d+\.\d\d\), σ = \(\d\.\d\d, \d\.\d\d\)", posterior), \
        posterior
    # The ring on both maps marks the image shown below, in the same run.
    for key in ("map_chart_VAE", "map_chart_AE"):
        assert [t.get("name") for t in plotly_spec(at, key)["layout"].get("shapes", [])].count("image 7") == 1


def test_a_link_to_the_latent_map_shows_the_image_its_sender_picked(app_env):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(REPO / "app_pages" / "1_Latent_map.py"), default_timeout=60)
    at.query_params["map_picked"] = "12"
    at.run()
    no_errors(at)
    assert any("test image 12" in c for im in at.image for c in im.captions)
    assert [s["name"] for s in plotly_spec(at, "map_chart_VAE")["layout"]["shapes"]] == ["image 12"]
    for bad in ("twelve", "99999999"):                # a damaged link: nothing picked, no error
        at = AppTest.from_file(str(REPO / "app_pages" / "1_Latent_map.py"), default_timeout=60)
        at.query_params["map_picked"] = bad
        at.run()
        no_errors(at)
        assert not at.image


def test_dims_for_keeps_the_dimensions_a_model_has_and_replaces_the_others():
    from explorer.sidebar import dims_for
    assert dims_for((3, 7), 20) == (3, 7)
    assert dims_for((25, 7), 20) == (0, 7)
    assert dims_for((0, 25), 20) == (0, 1)            # never the same dimension twice
    assert dims_for((25, 30), 20) == (0, 1)
    assert dims_for((5, 9), 2) == (0, 1)


def test_grid_gives_each_model_a_plane_it_has_when_their_sizes_differ(tmp_path, monkeypatch):
    """A 32-D VAE beside a 20-D AE (the shipped checkpoints): a VAE dimension the AE lacks must
    not reach the AE, and the page says which plane each model shows."""
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(REPO / "checkpoints"))
    monkeypatch.setenv("VAE_USER_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("VAE_NO_UMAP_WARMUP", "1")
    at = run_page("app_pages/2_Latent_grid.py")
    at.selectbox(key="sb_vae").set_value("mnist-bin-d32-vae-b1").run()
    at.selectbox(key="sb_ae").set_value("mnist-d20-ae").run()
    no_errors(at)
    at.selectbox(key="grid_dim_u").set_value(25).run()
    at.selectbox(key="grid_dim_v").set_value(7).run()
    no_errors(at)
    vae, ae = mosaic_svg(at, "grid_fig_VAE"), mosaic_svg(at, "grid_fig_AE")
    assert (svg_text(vae, "x-title"), svg_text(vae, "y-title")) == ("z25", "z7")
    ae_axes = (svg_text(ae, "x-title"), svg_text(ae, "y-title"))
    assert ae_axes[1] == "z7" and ae_axes[0] != "z7" and int(ae_axes[0][1:]) < 20
    captions = " ".join(c.value for c in at.caption)
    assert f"{ae_axes[0]} × z7" in captions and "z25 × z7" in captions
    plotly_spec(at, "grid_map_AE")                   # the map below is drawn for both


@pytest.mark.parametrize("page", ["app_pages/2_Latent_grid.py", "app_pages/3_Interpolation.py"])
def test_captions_count_the_codes_really_used(tmp_path, monkeypatch, page):
    """The digits set has fewer test images than the 2,000 codes asked for: captions say how many."""
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(REPO / "checkpoints"))
    monkeypatch.setenv("VAE_USER_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("VAE_NO_UMAP_WARMUP", "1")
    at = run_page(page)
    at.selectbox(key="sb_dataset").set_value("digits").run()
    no_errors(at)
    from explorer import models
    n = len(models.exploration_data("digits"))
    assert n < 2000
    captions = " ".join(c.value for c in at.caption)
    assert f"{n} test codes" in captions and "2000 test codes" not in captions


def test_compare_page_says_why_active_units_stay_flat_for_2d_models(tmp_path, monkeypatch):
    """The page opens on the shipped 20-D family, where dimensions switch off as β grows. The 2-D
    family keeps both dimensions at every β: for it the page says so and names the 20-D family."""
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(REPO / "checkpoints"))
    monkeypatch.setenv("VAE_USER_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("VAE_NO_UMAP_WARMUP", "1")
    at = run_page("app_pages/6_Compare_beta.py")
    no_errors(at)
    assert at.selectbox(key="cb_family").value == "shipped-mnist-d20"
    assert not [c.value for c in at.caption if "two latent dimensions" in c.value]
    assert [r for r in at.table if r.value is not None]   # the metric table is drawn
    # One block per model: its label, its file's name and its KL line (none for the AE).
    cards = [h.proto.body for h in at.get("html")]
    chosen = at.multiselect(key="cb_models").value
    assert len(cards) == len(chosen) >= 2
    for name in chosen:
        mine = [c for c in cards if f">{name}</div>" in c]
        assert len(mine) == 1 and mine[0].count("<img ") == 4, name
    assert sum("No KL: the AE" in c for c in cards) == sum(n.endswith("-ae") for n in chosen)
    assert sum("above 0.01 nats" in c for c in cards) == sum(not n.endswith("-ae") for n in chosen)
    at.selectbox(key="cb_family").set_value("shipped-mnist-d2").run()
    no_errors(at)
    note = [c.value for c in at.caption if "two latent dimensions" in c.value]
    assert len(note) == 1 and "(mnist d=20 · 6 models · pretrained)" in note[0]


def test_a_damaged_user_folder_never_breaks_a_page_and_the_upload_page_lists_what_was_skipped(tmp_path, monkeypatch):
    """A careless class's leftovers in the user folder: a dangling link, a folder named like a
    model, random bytes, a checkpoint whose metrics hold text. Every page opens; Home shows the
    metrics it can; Upload tells the operator which files were left out and why."""
    import shutil
    from vae_core.checkpoints import from_bytes, to_bytes
    user = tmp_path / "user"
    user.mkdir()
    (user / "dangling.safetensors").symlink_to(tmp_path / "nowhere")
    (user / "folder.safetensors").mkdir()
    (user / "noise.safetensors").write_bytes(b"\x00" * 100)
    good = REPO / "checkpoints" / "digits-d2-vae-b1.safetensors"
    ck = from_bytes(good.read_bytes(), local_file=True)
    (user / "mnist-d20-vae-b1.safetensors").write_bytes(to_bytes(
        ck.model, ck.train_config, dataset="digits", history=ck.history,
        metrics={"recon": "a lot", "kl": "none", "loss": [1, "x"]}, run=ck.run))
    monkeypatch.setenv("VAE_USER_DIR", str(user))
    (user / "unreadable.safetensors").write_bytes(b"x")
    (user / "unreadable.safetensors").chmod(0)                     # for a non-root server
    (user / ".mnist-d2-ae.safetensors1234.tmp").write_bytes(b"left by a killed save")
    for page in ("router.py", "app_pages/1_Latent_map.py", "app_pages/2_Latent_grid.py", "app_pages/3_Interpolation.py",
                 "app_pages/4_Sampling.py", "app_pages/5_Train.py", "app_pages/6_Compare_beta.py",
                 "app_pages/8_Class_gallery.py", "app_pages/7_Upload.py"):
        at = AppTest.from_file(str(REPO / page), default_timeout=120).run()
        assert not at.exception, (page, [e.value for e in at.exception])
    skipped = " ".join(str(v) for df in at.dataframe for v in df.value["file"].tolist())
    assert all(n in skipped for n in ("dangling", "folder", "noise")), skipped


@pytest.mark.parametrize("page, params, expected", [
    ("app_pages/2_Latent_grid.py", {"grid_q": "0.1", "grid_n": "20", "grid_span": "data"},
     {"grid_q": 0.1, "grid_n": 20, "grid_span": "data"}),
    ("app_pages/4_Sampling.py", {"samp_temp": "0.5", "samp_n": "16"}, {"samp_temp": 0.5, "samp_n": 16}),
    ("app_pages/1_Latent_map.py", {"map_seed": "7", "vae": "mnist-d2-vae-b1", "ae": "mnist-d2-ae"},
     {"map_seed": 7, "sel_vae": "mnist-d2-vae-b1", "sel_ae": "mnist-d2-ae"}),
    ("app_pages/2_Latent_grid.py", {"grid_n": "999", "grid_q": "lots", "vae": "../../etc/passwd"},
     {"grid_n": 15, "grid_q": 0.05, "sel_vae": "mnist-d2-vae-b1"}),        # a damaged link: the defaults
])
def test_a_link_sets_the_page_and_a_damaged_one_falls_back_to_the_defaults(page, params, expected):
    at = AppTest.from_file(str(REPO / page), default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    for k, v in expected.items():
        assert at.session_state[k] == v, (k, at.session_state[k])
    for k, v in params.items():
        if k in expected and k.startswith(("grid", "samp", "map")):
            assert str(at.query_params[k]) == str(expected[k])          # the address shows what is on screen
