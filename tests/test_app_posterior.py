"""The True posterior page under AppTest on tiny models: it runs on the 2-D pair, the K slider moves
the importance-weighted value, a 20-D pair gets the offer of the 2-D pair instead of a page."""
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from streamlit.testing.v1 import AppTest  # noqa: E402

from browser_support import make_tiny_checkpoints  # noqa: E402

PAGE = str(REPO / "app_pages" / "10_True_posterior.py")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture
def app_env(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(model_dir))
    monkeypatch.setenv("VAE_USER_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("VAE_NO_UMAP_WARMUP", "1")


def metric(at, label_start: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label_start))


def test_the_page_shows_the_exact_value_and_the_bound_moves_with_k(app_env):
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    exact = float(metric(at, "exact log p(x)"))
    at1000 = float(metric(at, "IWAE"))
    assert at1000 <= exact + 0.5
    assert "Notice" in at.markdown[1].value and "nats short of the exact log p(x)" in at.markdown[1].value
    at.select_slider(key="post_K").set_value(1).run()
    assert not at.exception
    assert float(metric(at, "IWAE")) != at1000
    assert at.query_params["post_K"] in ("1", ["1"])


def test_a_20d_pair_is_offered_the_2d_pair(app_env):
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["vae"] = "mnist-d20-vae-b1"
    at.query_params["ae"] = "mnist-d20-ae"
    at.run()
    assert not at.exception
    assert not at.metric
    at.button(key="use_2d_pair").click().run()
    assert not at.exception and at.metric
