"""Train a tiny model from the Train page in a real headless Chromium against `streamlit run`."""
import pytest

from browser_support import (ARTIFACTS, errors_shown, launch_chromium, open_page, screenshot,  # noqa: F401
                             start_server, stop_server, wait_healthy, wait_rendered)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app with empty model folders, so saving writes only into a temporary folder."""
    shipped = tmp_path_factory.mktemp("shipped")
    user = tmp_path_factory.mktemp("user")
    ARTIFACTS.mkdir(exist_ok=True)
    proc, url = start_server(env={"VAE_CHECKPOINT_DIR": str(shipped), "VAE_USER_DIR": str(user)},
                             log_path=ARTIFACTS / "streamlit-training.log")
    try:
        wait_healthy(url, proc, timeout=90)
        yield url, user
    finally:
        stop_server(proc)


def test_train_from_the_page_shows_live_curves_stops_and_saves(server, page):  # noqa: F811
    url, user = server
    open_page(page, url, "Train", until=".st-key-tr_train")
    # The default preset (MNIST, 2-D VAE) on 5,000 images for 200 epochs: each epoch takes a
    # moment and the whole run minutes, so Stop is pressed mid-run on a fast machine too
    # (the 8x8 digits demo can finish all its epochs in seconds).
    for key, value in (("tr_max_train", "5000"), ("tr_epochs", "200")):
        box = page.locator(f".st-key-{key} input")
        box.fill(value)
        box.press("Enter")
        wait_rendered(page)
    page.locator(".st-key-tr_train button").click()

    # The fragment polls the job: the curves and the Stop button appear while it trains.
    page.wait_for_selector(".st-key-tr_curves .js-plotly-plot", timeout=60_000)
    # The fragment redraws itself every moment: wait for its elements rather than count them once.
    page.wait_for_selector(".st-key-tr_stop button", timeout=30_000)
    page.wait_for_selector("[data-testid=stProgress]", timeout=30_000)
    screenshot(page, "train-live")
    assert "trainer=" in page.url                      # the token that finds the job after a refresh

    page.wait_for_function(  # at least one finished epoch: per-epoch lines join the per-batch ones
        "() => document.querySelectorAll('.st-key-tr_curves .scatterlayer .trace').length >= 4", timeout=60_000)
    page.locator(".st-key-tr_stop button").click()
    page.get_by_text("Training was stopped").wait_for(timeout=60_000)
    wait_rendered(page)
    assert not errors_shown(page)

    # A refresh starts a new session: the URL token reconnects it to the finished job.
    page.reload(wait_until="domcontentloaded")
    page.get_by_text("Training was stopped").wait_for(timeout=60_000)
    wait_rendered(page)
    # The same from another page: the token stays in the address there too.
    page.locator("[data-testid=stSidebarNav] a", has_text="Latent map").click()
    page.wait_for_url("**/Latent_map?*trainer=*", timeout=30_000)
    wait_rendered(page)
    page.reload(wait_until="domcontentloaded")
    wait_rendered(page)
    page.locator("[data-testid=stSidebarNav] a", has_text="Train").click()
    page.get_by_text("Training was stopped").wait_for(timeout=60_000)
    wait_rendered(page)
    name = page.locator("[class*='st-key-tr_name_0_'] input")
    name.fill("browser-vae")
    name.press("Enter")
    wait_rendered(page)
    page.locator("[class*='st-key-tr_save_0_'] button").click()
    page.get_by_text("Saved as browser-vae").wait_for(timeout=30_000)
    wait_rendered(page)
    screenshot(page, "train-finished")
    assert (user / "browser-vae.safetensors").is_file()
    assert not errors_shown(page)
