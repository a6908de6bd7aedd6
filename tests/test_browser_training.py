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
    page.locator(".st-key-tr_stop button").first.click()   # the live fragment may hold a stale copy a moment
    page.get_by_text("Training was stopped").wait_for(timeout=60_000)
    wait_rendered(page)
    assert not errors_shown(page)

    # Done: the token leaves the address (a link shared now is a plain view), and the session
    # keeps its job across pages.
    page.wait_for_function("() => !location.search.includes('trainer=')", timeout=30_000)
    page.locator("[data-testid=stSidebarNav] a", has_text="Latent map").click()
    page.wait_for_url("**/Latent_map**", timeout=30_000)
    wait_rendered(page)
    assert "trainer=" not in page.url
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


def test_four_students_train_at_once_none_refused_each_sees_their_own_job(server, browser):  # noqa: F811
    """Four browser contexts press Train on the 8x8 digits demo at the same moment, on a server
    with one worker: none is refused, the waiting ones see their place in the queue, all four
    finish, and each page shows its own job (the queue keys jobs by each session's token)."""
    from vae_core import jobs
    url, _ = server
    pages = [browser.new_context(viewport={"width": 1280, "height": 800}).new_page() for _ in range(4)]
    try:
        for pg in pages:
            open_page(pg, url, "Train", until=".st-key-tr_train")
            pg.locator(".st-key-tr_preset input").click()
            pg.get_by_role("option", name="Fast demo (8x8 digits, seconds)").click()
            wait_rendered(pg)
            box = pg.locator(".st-key-tr_epochs input")
            box.fill("60")
            box.press("Enter")
            wait_rendered(pg)
        for pg in pages:                                   # as close together as one thread can click
            pg.locator(".st-key-tr_train button").click()
        queued, tokens = 0, set()
        for pg in pages:
            pg.wait_for_function("() => location.search.includes('trainer=')", timeout=90_000)
            tokens.add(pg.url.split("trainer=")[1].split("&")[0])      # in the address while it trains
            pg.wait_for_function(
                """() => document.querySelector('[data-testid=stProgress]')
                      || document.body.innerText.includes('Waiting in the training queue')
                      || document.body.innerText.includes('Training finished')""", timeout=90_000)
            queued += "Waiting in the training queue" in pg.locator("body").inner_text()
            assert not errors_shown(pg)
        assert queued >= 1, "with one worker and four jobs, someone waits in the queue"
        screenshot(pages[-1], "train-queued")
        assert len(tokens) == 4, "four students, four jobs"
        for pg in pages:
            pg.get_by_text("Training finished").wait_for(timeout=240_000)
            wait_rendered(pg)
            assert not errors_shown(pg)
            assert "trainer=" not in pg.url                              # done: the token left the address
        for token in tokens:
            view = jobs.view(token)
            assert view.status == "finished" and len(view.runs) == 2
    finally:
        for pg in pages:
            pg.context.close()
