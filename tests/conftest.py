"""Shared test setup: offline data, small threads, tiny datasets."""
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

# Tests read MNIST from the offline copy beside the repository and never download.
os.environ.setdefault("VAE_DATA_DIR", str((REPO / ".." / "shared" / "data").resolve()))
def _loopback_only():
    """Tests never touch the network: a connection anywhere but this machine fails loudly, so
    a missing offline copy shows up as an error instead of a download."""
    import ipaddress
    import socket
    connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and host != "localhost":
            try:
                ok = ipaddress.ip_address(host.split("%")[0]).is_loopback
            except ValueError:
                ok = False
            if not ok:
                raise OSError(f"tests may not reach the network (tried {address}); "
                              "set VAE_DATA_DIR to the offline data instead")
        return connect(self, address)

    socket.socket.connect = guarded


_loopback_only()


@pytest.fixture(scope="session", autouse=True)
def ray_folder():
    """One local Ray head for the whole run (started by the first test that trains, in its own
    folder, one worker: the other core stays with the tests and the browser servers), stopped
    at the end with every process it started."""
    import shutil
    import tempfile
    folder = Path(tempfile.mkdtemp(prefix="vr"))   # short: Ray's socket paths live under it
    os.environ["VAE_RAY_DIR"] = str(folder)
    os.environ.setdefault("VAE_RAY_CPUS", "1")
    os.environ["VAE_RAY_KEEP"] = "1"     # one head for the whole run, whichever process started it
    os.environ.pop("RAY_ADDRESS", None)
    yield folder
    from vae_core import cluster
    cluster.stop_local_head(folder)
    shutil.rmtree(folder, ignore_errors=True)
# Tiny test models run faster on one thread than two (less synchronisation), and the
# Streamlit server of the browser tests keeps the other core.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 8x8 digits as (train, test) ImageData: always offline, tiny."""
    from vae_core.data import load_dataset
    return load_dataset("digits", "train"), load_dataset("digits", "test")


@pytest.fixture(scope="session")
def mnist_small():
    """The first 2,000 MNIST training and 500 test images from the offline copy."""
    from vae_core.data import load_dataset
    return load_dataset("mnist", "train").subset(2000), load_dataset("mnist", "test").subset(500)


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread. For tiny models on a busy 2-core machine, two threads
    spin against each other and the background jobs: a backward pass was ~10x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# The browser fixtures are registered here, once: a session-scoped Playwright imported into two
# test modules would start twice, and Playwright's sync API refuses a second loop in one thread.
from browser_support import browser, make_tiny_checkpoints, page, streamlit_server  # noqa: E402,F401


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A checkpoint folder like the shipped one, tiny: the default MNIST pairs (d = 20 and d = 2)
    and the exploration data (browser_support.make_tiny_checkpoints). A module may override it."""
    return make_tiny_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture
def app_env(model_dir, tmp_path, monkeypatch):
    """The app pointed at model_dir, a fresh user folder, and no UMAP warm-up thread."""
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(model_dir))
    monkeypatch.setenv("VAE_USER_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("VAE_NO_UMAP_WARMUP", "1")
    return model_dir
