"""Bad input (issue 6): every bad drawing, setting or save name gets a message that names the
problem and the fix, nothing on disk changes, and the page still runs afterwards.

Each case is driven where the user meets it: the Sampling page's "Draw your own digit" upload,
the Train page's widgets, save box and sweep, and the Upload page's save form, all under
streamlit.testing.v1.AppTest with the app pointed at temporary folders (VAE_CHECKPOINT_DIR,
VAE_USER_DIR). The drawing canvas cannot be driven by AppTest; its RGBA arrays go through
explorer.models.prepare_drawing, the function the page hands them to. Checkpoint and .npz
uploads themselves are covered in test_app_upload.py.
"""
import io
import math
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from explorer import training as tr
from explorer.models import prepare_drawing
from vae_core.checkpoints import load_checkpoint
from vae_core.config import ModelConfig, TrainConfig
from vae_core.errors import ConfigError, DataError
from vae_core import jobs
from vae_core.checkpoints import path_in, save_bytes
from vae_core.runs import execute
from job_support import Job
from file_support import snapshot

REPO = Path(__file__).resolve().parent.parent
SAMPLING = str(REPO / "app_pages" / "4_Sampling.py")
TRAIN = str(REPO / "app_pages" / "5_Train.py")
UPLOAD = str(REPO / "app_pages" / "7_Upload.py")
GOOD = REPO / "checkpoints" / "digits-d2-vae-b1.safetensors"
FAST = "Fast demo (8x8 digits, seconds)"


# ------------------------------------------------------------------ shared helpers

@pytest.fixture
def folders(tmp_path, monkeypatch):
    """A private 'shipped' folder with the digits pair and a user folder holding one model of
    the user's own, both under tmp_path, so a before/after hash of tmp_path sees any stray file."""
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    shipped.mkdir()
    user.mkdir()
    for name in ("digits-d2-vae-b1", "digits-d2-ae"):
        shutil.copy(REPO / "checkpoints" / f"{name}.safetensors", shipped)
    shutil.copy(GOOD, user / "taken.safetensors")
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(shipped))
    monkeypatch.setenv("VAE_USER_DIR", str(user))
    monkeypatch.setenv("VAE_NO_UMAP_WARMUP", "1")
    yield tmp_path


def no_errors(at):
    assert not at.exception, [e.value for e in at.exception]


def still_answers(at):
    """The app still answers: a plain rerun of the same session runs without an exception."""
    at.run()
    no_errors(at)


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def png(arr: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def giant_png(w: int, h: int) -> bytes:
    """A black 1-bit PNG of w x h pixels, a few tens of KB: compressed row by row, never held whole."""
    row, z = b"\0" * (1 + (w + 7) // 8), zlib.compressobj(9)
    data = b"".join(z.compress(row) for _ in range(h)) + z.flush()

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def a_one(size: int = 100) -> np.ndarray:
    img = np.zeros((size, size), np.uint8)
    img[size * 15 // 100:size * 85 // 100, size * 45 // 100:size * 58 // 100] = 255
    return img


# ------------------------------------------------------------------ 1. drawings

def canvas(h=280, w=280) -> np.ndarray:
    """What the canvas hands back before anything is drawn: RGBA, all transparent."""
    return np.zeros((h, w, 4), np.uint8)


def canvas_with_dot(radius: int) -> np.ndarray:
    """The canvas after one click with a white brush: an opaque disc of the given radius."""
    a = canvas()
    yy, xx = np.mgrid[:280, :280]
    disc = (yy - 140) ** 2 + (xx - 140) ** 2 <= radius ** 2
    a[disc] = (255, 255, 255, 255)
    return a


@pytest.mark.parametrize("name, pixels, phrase", [
    ("all zeros", canvas(), "the drawing is empty"),
    ("transparent white", np.concatenate([np.full((280, 280, 3), 255, np.uint8),
                                          np.zeros((280, 280, 1), np.uint8)], axis=2), "the drawing is empty"),
    ("a one-pixel dot", canvas_with_dot(0), "the drawing is empty"),
    ("uniform grey", np.full((280, 280, 4), (100, 100, 100, 255), np.uint8), "almost all ink"),
])
def test_canvas_arrays_without_a_digit_are_refused_with_the_fix(name, pixels, phrase):
    before = pixels.copy()
    with pytest.raises(DataError, match=phrase) as e:
        prepare_drawing(pixels, (1, 28, 28))
    assert "draw a digit" in str(e.value)
    assert np.array_equal(pixels, before), "the canvas's array is not modified"


def test_a_single_brush_click_is_encoded_like_any_drawing():
    # A brush click (22 px wide on the page) is ink the user put there: it is laid out like a
    # digit, not refused, and stays inside [0, 1].
    x = prepare_drawing(canvas_with_dot(11), (1, 28, 28))
    assert x.shape == (1, 1, 28, 28) and 0 <= x.min() and x.max() <= 1 and x.max() > 0.5
    assert x[0, 0, :4].sum() == 0 and x[0, 0, -4:].sum() == 0, "centred with a margin, like MNIST"


DRAWINGS = {
    "all black": (png(np.zeros((200, 200), np.uint8)), "warning", "the drawing is empty"),
    "fully transparent": (png(np.zeros((200, 200, 4), np.uint8)), "warning", "the drawing is empty"),
    "all white": (png(np.full((200, 200), 255, np.uint8)), "warning", "the drawing is empty"),
    "not a picture": (b"this is text, not a PNG", "error", "not a picture this app can read"),
    "truncated": (png(a_one())[:60], "error", "not a picture this app can read"),
    "20000 x 20000": (giant_png(20000, 20000), "error", "upload a picture of at most 4096 × 4096"),
    "5000 x 5000": (giant_png(5000, 5000), "error", "upload a picture of at most 4096 × 4096"),
}


@pytest.mark.parametrize("case", list(DRAWINGS))
def test_a_bad_picture_is_explained_and_the_page_keeps_working(case, folders):
    data, kind, phrase = DRAWINGS[case]
    before = snapshot(folders)
    at = AppTest.from_file(SAMPLING, default_timeout=120).run()
    no_errors(at)
    upload = at.file_uploader(key="draw_upload")
    upload.set_value(("good.png", png(a_one()), "image/png")).run()
    no_errors(at)
    assert "draw_codes" in at.session_state                 # a good digit was encoded first
    n_images = len(at.image)

    at.file_uploader(key="draw_upload").set_value((f"{case}.png", data, "image/png")).run()
    no_errors(at)
    shown = texts(at.warning if kind == "warning" else at.error)
    assert len(shown) == 1 and phrase in shown[0], shown
    assert "upload" in shown[0] or "draw a digit" in shown[0], "the message says what to do"
    assert not any("reconstruction" in c for im in at.image for c in im.captions), "nothing was encoded"
    assert len(at.image) < n_images
    assert "draw_codes" not in at.session_state, "the previous digit's codes are not passed off as this one's"
    assert snapshot(folders) == before

    still_answers(at)
    at.file_uploader(key="draw_upload").set_value(("good-again.png", png(a_one(60)), "image/png")).run()
    no_errors(at)
    assert not at.warning and not at.error
    assert len(at.session_state["draw_codes"]["VAE"]) == 2   # the page encodes again


# ------------------------------------------------------------------ 2. training settings

def page_values(**over) -> dict:
    """The Train page's widget values for the fast preset on 64 digits, with changes."""
    return {**tr.DEFAULTS, **tr.PRESETS[FAST], "models": "VAE", "epochs": 1, "max_train": 64, **over}


@pytest.mark.parametrize("over", [
    {"beta": 0.0}, {"beta": 1000.0}, {"latent": 1}, {"latent": 256}, {"epochs": 1}, {"batch": 1},
    {"models": "AE and VAE (same seed)", "batch": 1, "latent": 1},
], ids=["beta=0", "beta=1000", "d=1", "d=256", "one-epoch", "batch=1", "ae+vae-batch1-d1"])
def test_extreme_legal_settings_train_to_a_usable_model(over, tmp_path, one_thread):
    spec = tr.spec_from_values(page_values(**{"epochs": 2, **over}))      # the spec the page builds
    # The run pipeline the workers run (vae_core.runs.execute), here in-process.
    for i, run_spec in enumerate(spec.run_specs("student-test", "extreme")):
        run = execute(run_spec)
        assert run.usable and run.status == "finished", (run.status, run.message)
        assert len(run.history) == spec.train.epochs
        assert all(math.isfinite(v) for rec in run.history for k, v in rec.items() if k != "epoch"), run.history
        assert math.isfinite(run.metrics["recon"])
        path = save_bytes(path_in(tmp_path, f"extreme-{i}"), run.to_bytes())
        ckpt = load_checkpoint(path)
        assert ckpt.model_config.latent_dim == spec.model.latent_dim
        assert ckpt.train_config.batch_size == spec.train.batch_size
        if run_spec.model.kind == "vae":
            assert ckpt.train_config.beta == spec.train.beta
        with torch.no_grad():
            img = ckpt.model.decode_image(torch.zeros(3, spec.model.latent_dim))
        assert img.shape == (3, 1, 8, 8) and torch.isfinite(img).all()


def page_train(at, **numbers):
    """Choose the fast preset, set number widgets, press Train; returns the job."""
    at.selectbox(key="tr_preset").set_value(FAST).run()
    at.radio(key="tr_models").set_value("VAE")
    for key, value in numbers.items():
        at.number_input(key=key).set_value(value)
    at.run()
    for key, value in numbers.items():
        assert at.number_input(key=key).value == value, f"the page accepts {key} = {value}"
    at.button(key="tr_train").click().run()
    no_errors(at)
    job = Job(at.session_state["train_owner"])
    assert job.view() is not None, [e.value for e in at.error]
    return job


@pytest.mark.parametrize("numbers", [
    dict(tr_beta=1000.0, tr_latent=256, tr_epochs=1, tr_max_train=64),
    dict(tr_beta=0.0, tr_latent=1, tr_epochs=1, tr_max_train=64),
], ids=["beta=1000,d=256", "beta=0,d=1"])
def test_extreme_settings_through_the_train_page(numbers, folders):
    before = snapshot(folders)
    at = AppTest.from_file(TRAIN, default_timeout=60).run()
    job = page_train(at, **numbers)
    assert job.latent_dim == numbers["tr_latent"] and job.runs[0].beta == numbers["tr_beta"]
    assert job.wait(120)
    still_answers(at)
    assert job.status == "finished", job.message
    assert any("Training finished" in s for s in texts(at.success))
    assert not at.error
    assert [w.key.split("_")[2] for w in at.text_input if w.key.startswith("tr_name_")] == ["0"]
    assert snapshot(folders) == before, "training alone writes nothing"


@pytest.mark.parametrize("key, text, field, fix", [
    ("tr_hidden", "0", "hidden sizes", "512,256"),
    ("tr_hidden", "-5", "hidden sizes", "512,256"),
    ("tr_hidden", "", "hidden sizes", "512,256"),
    ("tr_hidden", "1.5", "hidden sizes", "512,256"),
    ("tr_hidden", "99999", "hidden sizes", "1 to 4096"),
    ("tr_channels", "zero", "conv channels", "512,256"),
    ("tr_channels", "-32,64", "conv channels", "512,256"),
])
def test_illegal_text_settings_start_no_job(key, text, field, fix, folders):
    before = snapshot(folders)
    at = AppTest.from_file(TRAIN, default_timeout=60).run()
    at.text_input(key=key).set_value(text).run()
    at.button(key="tr_train").click().run()
    no_errors(at)
    errors = texts(at.error)
    assert len(errors) == 1 and field in errors[0] and fix in errors[0] and repr(text) in errors[0], errors
    assert jobs.view(at.session_state["train_owner"]) is None, "no job started"
    assert snapshot(folders) == before
    still_answers(at)


@pytest.mark.parametrize("betas", ["-1", "0.5, -2", "zero", "", "nan", "inf", "1,2,3,4,5,6,7,8,9"])
def test_illegal_sweep_betas_start_no_job(betas, folders):
    before = snapshot(folders)
    at = AppTest.from_file(TRAIN, default_timeout=60).run()
    at.selectbox(key="tr_preset").set_value(FAST).run()
    at.text_input(key="tr_sweep_betas").set_value(betas)
    at.button(key="tr_sweep_start").click().run()
    no_errors(at)
    errors = texts(at.error)
    assert len(errors) == 1 and "β values" in errors[0] and "e.g. 0.5, 1, 2, 4" in errors[0], errors
    assert jobs.view(at.session_state["train_owner"]) is None, "no job started"
    assert snapshot(folders) == before
    still_answers(at)


@pytest.mark.parametrize("key, value", [
    ("tr_latent", -1), ("tr_latent", 0), ("tr_latent", 257), ("tr_epochs", 0), ("tr_epochs", -3),
    ("tr_beta", -1.0), ("tr_max_train", -100), ("tr_seed", -1),
])
def test_out_of_range_numbers_never_reach_a_job(key, value, folders):
    # A browser's number box refuses such a value itself; a client that sends one anyway gets a
    # value inside the box's range, so the spec the page builds is always legal.
    at = AppTest.from_file(TRAIN, default_timeout=60).run()
    at.selectbox(key="tr_preset").set_value(FAST).run()
    box = at.number_input(key=key)
    box.set_value(value).run()
    no_errors(at)
    got = at.number_input(key=key)
    assert got.value != value and got.min <= got.value <= got.max
    tr.spec_from_values({k: at.session_state[f"tr_{k}"] for k in tr.DEFAULTS})   # raises if illegal
    assert jobs.view(at.session_state["train_owner"]) is None


@pytest.mark.parametrize("kwargs, field, fix", [
    (dict(epochs=0), "epochs", "at least 1"),
    (dict(epochs=-2), "epochs", "at least 1"),
    (dict(epochs="10"), "epochs", "whole number"),
    (dict(epochs=True), "epochs", "whole number"),
    (dict(batch_size=0), "batch size", "at least 1"),
    (dict(batch_size=float("nan")), "batch size", "whole number"),
    (dict(lr=0.0), "learning rate", "1e-3"),
    (dict(lr="fast"), "learning rate", "1e-3"),
    (dict(beta=-0.5), "beta", "at least 0"),
    (dict(beta="four"), "beta", "at least 0"),
    (dict(beta=float("inf")), "beta", "at least 0"),
    (dict(warmup_epochs="x"), "warm-up epochs", "0 or more"),
    (dict(warmup_epochs=-1.0), "warm-up epochs", "0 or more"),
    (dict(free_bits="x"), "free bits", "0 or more"),
    (dict(free_bits=float("nan")), "free bits", "0 or more"),
    (dict(lr_decay="x"), "lr decay", "(0, 1]"),
    (dict(lr_decay=0.0), "lr decay", "(0, 1]"),
    (dict(seed=-1), "seed", "at least 0"),
    (dict(seed="x"), "seed", "at least 0"),
    (dict(max_train=-5), "max_train", "positive count"),
    (dict(max_train="all"), "max_train", "positive count"),
    (dict(dataset=""), "dataset", "digits"),
    (dict(dataset=7), "dataset", "digits"),
])
def test_train_config_refuses_with_the_field_and_the_fix(kwargs, field, fix):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**kwargs)
    msg = str(e.value)
    assert msg.startswith(f"{field} = {next(iter(kwargs.values()))!r} is invalid") and fix in msg, msg


@pytest.mark.parametrize("kwargs, field, fix", [
    (dict(latent_dim=0), "latent size", "from 1 to 256"),
    (dict(latent_dim=-3), "latent size", "from 1 to 256"),
    (dict(latent_dim=257), "latent size", "from 1 to 256"),
    (dict(latent_dim="2"), "latent size", "from 1 to 256"),
    (dict(latent_dim=float("nan")), "latent size", "from 1 to 256"),
    (dict(latent_dim=True), "latent size", "from 1 to 256"),
    (dict(hidden=(-5,)), "hidden sizes", "512,256"),
    (dict(hidden="wide"), "hidden", "whole numbers"),
    (dict(channels=(0, 8), arch="conv"), "conv channels", "32,64"),
    (dict(gaussian_sigma=0.0), "gaussian_sigma", "such as 0.1"),
    (dict(gaussian_sigma=float("nan")), "gaussian_sigma", "such as 0.1"),
    (dict(gaussian_sigma="small"), "gaussian_sigma", "such as 0.1"),
])
def test_model_config_refuses_with_the_field_and_the_fix(kwargs, field, fix):
    with pytest.raises(ConfigError) as e:
        ModelConfig(**kwargs)
    msg = str(e.value)
    assert msg.startswith(field) and fix in msg, msg


# ------------------------------------------------------------------ 3. save names

OUTSIDE = "/tmp/vae-bad-input-abs"    # where an absolute name would land, were it accepted
BAD_NAMES = {
    "dot-dot": ("../x", "only hold the letters A-Z"),
    "absolute": (OUTSIDE + "/path", "only hold the letters A-Z"),
    "empty": ("", "the name is empty"),
    "blank": ("   ", "the name is empty"),
    "300 chars": ("n" * 300, "300 characters long: use at most 80"),
    "accented": ("modèle-β", "no accents or other scripts"),
    "chinese": ("模型", "no accents or other scripts"),
    "slash": ("a/b", "no folders"),
    "backslash": ("a\\b", "no folders"),
}


def assert_nothing_written(root: Path, before: dict, name: str):
    assert snapshot(root) == before, "every file in the checkpoint and user folders is unchanged"
    assert not Path(OUTSIDE).exists()
    assert not (root.parent / "x.safetensors").exists()
    assert sorted(p.name for p in (root / "user").iterdir()) == ["taken.safetensors"], name


@pytest.fixture(scope="module")
def finished_job():
    """One tiny finished VAE job in the app's job manager; each test opens the Train page as its
    owner (what a refresh with ?trainer=<token> does) and tries to save it."""
    owner = "0123456789abcdef0123456789abcdef"
    jobs.submit(owner, tr.spec_from_values(page_values()))
    job = Job(owner)
    assert job.wait(120) and job.status == "finished", job.message
    yield owner, job


def train_page_of(owner) -> AppTest:
    at = AppTest.from_file(TRAIN, default_timeout=60)
    at.session_state["train_owner"] = owner
    at.run()
    no_errors(at)
    return at


def save_box(at):
    names = [w for w in at.text_input if w.key.startswith("tr_name_")]
    buttons = [b for b in at.button if b.key.startswith("tr_save_")]
    assert len(names) == 1 and len(buttons) == 1, "the finished VAE offers its save box"
    return names[0], buttons[0]


@pytest.mark.parametrize("case", list(BAD_NAMES) + ["existing"])
def test_train_page_refuses_a_bad_save_name(case, finished_job, folders):
    owner, job = finished_job
    name, phrase = BAD_NAMES.get(case, ("taken", "taken.safetensors already exists: choose another name"))
    before = snapshot(folders)
    at = train_page_of(owner)
    save_box(at)[0].set_value(name).run()
    save_box(at)[1].click().run()
    no_errors(at)
    errors = texts(at.error)
    assert len(errors) == 1 and errors[0].startswith("Not saved: ") and phrase in errors[0], errors
    assert "download below still works" in errors[0]
    assert not job.runs[0].saved_path
    assert_nothing_written(folders, before, name)
    still_answers(at)
    save_box(at)                                              # the box is there to try again


def test_train_page_unicode_sweep_prefix_and_empty_prefix_start_no_job(folders):
    before = snapshot(folders)
    at = AppTest.from_file(TRAIN, default_timeout=60).run()
    for prefix, phrase in [("模型", "no accents or other scripts"), ("", "the name is empty"),
                           ("../up", "only hold the letters A-Z"), ("x" * 90, "use at most 80")]:
        at.text_input(key="tr_sweep_prefix").set_value(prefix)
        at.button(key="tr_sweep_start").click().run()
        no_errors(at)
        errors = texts(at.error)
        assert len(errors) == 1 and errors[0].startswith("name prefix: ") and phrase in errors[0], errors
        assert jobs.view(at.session_state["train_owner"]) is None, "no job started"
    assert_nothing_written(folders, before, "prefix")
    still_answers(at)


@pytest.mark.parametrize("case", list(BAD_NAMES))
def test_upload_page_refuses_a_bad_save_name(case, folders):
    # The existing name on this page is covered by test_app_upload's "refuses its name twice".
    name, phrase = BAD_NAMES[case]
    before = snapshot(folders)
    at = AppTest.from_file(UPLOAD, default_timeout=60).run()
    at.file_uploader(key="upload_ckpt").upload(GOOD.name, GOOD.read_bytes()).run()
    no_errors(at)
    at.text_input(key="upload_name").input(name)
    at.button[0].click().run()
    no_errors(at)
    errors = texts(at.error)
    assert len(errors) == 1 and errors[0].startswith("Not saved: ") and phrase in errors[0], errors
    assert not any("Saved as" in s for s in texts(at.success))
    assert_nothing_written(folders, before, name)
    still_answers(at)
    assert "taken" in at.caption[-1].value                    # the user's model list is as it was


def test_a_network_the_loader_would_refuse_is_refused_before_training(folders):
    """Eight hidden layers of 4,096 (a 921 MB checkpoint, gigabytes to train): the Train page says
    the size and the limit, and no job starts."""
    at = AppTest.from_file(TRAIN, default_timeout=60).run()
    at.text_input(key="tr_hidden").set_value(",".join(["4096"] * 8)).run()
    at.button(key="tr_train").click().run()
    no_errors(at)
    assert any("200 MB" in e.value and "weights" in e.value for e in at.error), [e.value for e in at.error]
    assert jobs.view(at.session_state["train_owner"]) is None, "no job started"


def test_an_npz_replaced_in_place_is_read_again_by_the_views(app_env, tmp_path):
    """explorer.models.exploration_data keys on the file's size and time of change: a student who
    replaces their .npz under the same name sees the new images, not the old ones kept in memory."""
    import os
    import numpy as np
    from explorer import models
    data = tmp_path / "mine.npz"
    np.savez(data, x=np.zeros((40, 8, 8), np.uint8))
    before = len(models.exploration_data(str(data)))
    np.savez(data, x=np.full((80, 8, 8), 255, np.uint8))
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    after = models.exploration_data(str(data))
    assert len(after) == 2 * before
    assert float(after.x.max()) == 1.0
