"""The Upload page in a real headless Chromium: a file of random bytes sent through the browser's
file input is refused with its reason, and the page shows no exception."""
import os

import pytest

from browser_support import errors_shown, open_page, screenshot, wait_rendered

pytestmark = pytest.mark.browser


def test_random_bytes_upload_is_refused_in_the_browser(streamlit_server, page):
    open_page(page, streamlit_server, "Upload")
    page.locator(".st-key-upload_ckpt input[type=file]").set_input_files(
        files=[{"name": "random.safetensors", "mimeType": "application/octet-stream",
                "buffer": os.urandom(4096)}])
    page.wait_for_selector("[data-testid=stAlertContentError]", timeout=120_000)
    wait_rendered(page)
    shown = errors_shown(page)
    screenshot(page, "upload-random-bytes")
    assert page.locator("[data-testid=stException]").count() == 0, shown
    assert len(shown) == 1, shown
    assert "refused, and nothing was saved" in shown[0] and "not a checkpoint or is truncated" in shown[0], shown
    assert page.locator("[data-testid=stAlertContentSuccess]").count() == 0
