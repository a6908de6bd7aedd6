"""The True posterior page under Streamlit's AppTest on tiny models with the shipped names: it shows
the exact log p(x), the ELBO and the KL that is their gap, the K slider moves the IWAE value, a 20-D
pair gets the switch to the 2-D pair, and a family of 2-D VAEs is ranked by exact log p(x)."""
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:          # the page imports `explorer` from the repository root
    sys.path.insert(0, str(REPO))

from streamlit.testing.v1 import AppTest  # noqa: E402

from chart_support import chart_keys  # noqa: E402

from browser_support import make_tiny_checkpoints  # noqa: E402

PAGE = "app_pages/10_True_posterior.py"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The tiny shipped set plus a second 2-D VAE of the same run group (β = 2, its weights nudged),
    so the family table has two models to rank."""
    import torch

    from vae_core import runmeta
    from vae_core.checkpoints import load_checkpoint, save_checkpoint
    folder = make_tiny_checkpoints(tmp_path_factory.mktemp("checkpoints"))
    ck = load_checkpoint(folder / "mnist-d2-vae-b1.safetensors")
    with torch.no_grad():
        for p in ck.model.decoder.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    run = runmeta.make("vae", 2.0, 0, group="shipped-mnist-d2", owner="shipped", created=0.0)
    save_checkpoint(folder / "mnist-d2-vae-b2", ck.model, ck.train_config, dataset="mnist", history=ck.history, run=run)
    return folder


# app_env (tests/conftest.py) points the app at the model_dir above.


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


def metric(at: AppTest, label_start: str) -> float:
    for m in at.metric:
        if m.label.startswith(label_start):
            return float(m.value)
    raise AssertionError(f"no metric {label_start!r}: {[m.label for m in at.metric]}")


def test_the_page_shows_the_gap_equal_to_the_kl(app_env):
    at = run_page()
    assert at.session_state["sel_vae"] == "mnist-d2-vae-b1"
    exact, elbo = metric(at, "exact log p(x)"), metric(at, "ELBO")
    gap, kl = metric(at, "gap"), metric(at, "KL(")
    assert elbo < exact
    assert gap == pytest.approx(exact - elbo, abs=0.01)
    assert kl == pytest.approx(gap, abs=0.01)
    notice = at.markdown[0].value
    assert notice.startswith("**Notice:**") and f"{gap:.2f}" in notice
    assert chart_keys(at) >= {"post_fig", "post_bound"}


def test_moving_k_changes_the_iwae_value(app_env):
    at = run_page()
    at.select_slider(key="post_K").set_value(1).run()
    no_errors(at)
    k1 = metric(at, "IWAE, K = 1")
    assert k1 == pytest.approx(metric(at, "ELBO"), abs=0.5)     # K = 1 is the ELBO up to sampling noise
    at.select_slider(key="post_K").set_value(1000).run()
    no_errors(at)
    k1000 = metric(at, "IWAE, K = 1000")
    assert k1 < k1000 <= metric(at, "exact log p(x)") + 0.05
    assert at.query_params["post_K"] == "1000"


def test_a_link_picks_the_image_and_k(app_env):
    at = run_page({"post_class": "7", "post_k": "2", "post_K": "20"})
    assert at.session_state["post_class"] == 7 and at.session_state["post_k"] == 2
    assert any(m.label == "IWAE, K = 20" for m in at.metric)
    other = run_page({"post_class": "1"})
    assert metric(other, "exact log p(x)") != metric(at, "exact log p(x)")


def test_a_20d_pair_gets_the_switch_to_the_2d_pair(app_env):
    at = run_page({"vae": "mnist-d20-vae-b1", "ae": "mnist-d20-ae"})
    assert at.session_state["sel_vae"] == "mnist-d20-vae-b1"
    assert any("20 latent dimensions" in i.value for i in at.info)
    assert not at.metric                                    # nothing is integrated for d = 20
    at.button(key="use_2d_pair").click().run()
    no_errors(at)
    assert at.session_state["sel_vae"] == "mnist-d2-vae-b1"
    assert metric(at, "exact log p(x)") < 0


def test_the_family_is_ranked_by_exact_log_px(app_env):
    at = run_page()
    at.toggle(key="post_rank").set_value(True).run()
    no_errors(at)
    # The integrals run in the background: meanwhile a progress bar, then the table.
    assert at.get("progress") and not at.table
    from explorer import background              # AppTest runs the page in this process
    assert [j.nice for k, j in background._JOBS.items() if k[0] == "post_rank"] == [background.GIVE_WAY]
    import time
    for _ in range(1200):                         # what the progress fragment's rerun does in a browser
        if not at.get("progress"):
            break
        assert "Integrating p(x) for each model" in at.get("progress")[0].proto.text
        time.sleep(0.1)
        at.run()
    no_errors(at)
    table = at.table[0].value
    assert sorted(table["model"]) == ["mnist-d2-vae-b1", "mnist-d2-vae-b2"]
    assert list(table["exact log p(x)"]) == sorted(table["exact log p(x)"], reverse=True)
    assert (table["exact log p(x)"] >= table["IWAE, K = 1000"] - 0.05).all()
    assert (table["exact − IWAE"] - (table["exact log p(x)"] - table["IWAE, K = 1000"])).abs().max() < 1e-9
    caption = " ".join(c.value for c in at.caption)
    assert f"{table['exact − IWAE'].max():.2f} nats" in caption
    # Kept in the user folder: the next visitor (a new session) gets the table at once, no job.
    background._JOBS.clear()
    again = run_page()
    again.toggle(key="post_rank").set_value(True).run()
    no_errors(again)
    assert not again.get("progress") and not [k for k in background._JOBS if k[0] == "post_rank"]
    assert again.table[0].value.equals(table)


def test_a_single_2d_vae_gets_no_family_table(tmp_path, monkeypatch, model_dir):
    folder = tmp_path / "ckpt"
    shutil.copytree(model_dir, folder)
    (folder / "mnist-d2-vae-b2.safetensors").unlink()
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(folder))
    monkeypatch.setenv("VAE_USER_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("VAE_NO_UMAP_WARMUP", "1")
    at = run_page()
    assert not [t for t in at.toggle if t.key == "post_rank"]
    assert metric(at, "exact log p(x)") < 0
