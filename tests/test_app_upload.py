"""Uploads: every bad checkpoint is refused with its reason and leaves every folder as it was; a
good one is saved once under a safe name and shows up in the model list; image sets are checked.

The checks are driven twice: as plain functions (explorer/uploads.py) and through the page under
AppTest, whose file_uploader takes bytes as a browser would send them.
"""
import io
import json
import os
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from explorer import uploads
from vae_core.errors import CheckpointError, DataError
from file_support import snapshot

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "checkpoints" / "digits-d2-vae-b1.safetensors"
PAGE = str(REPO / "app_pages" / "7_Upload.py")


def _metadata(data: bytes) -> dict:
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n])["__metadata__"]


@pytest.fixture(scope="module")
def good() -> bytes:
    return SOURCE.read_bytes()


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """A private copy of two shipped checkpoints (the 'shipped' folder) and an empty user folder,
    so that the background job writing into checkpoints/ cannot disturb the before/after check."""
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    shipped.mkdir()
    user.mkdir()
    for name in ("digits-d2-vae-b1", "digits-d2-ae"):
        shutil.copy(REPO / "checkpoints" / f"{name}.safetensors", shipped)
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(shipped))
    monkeypatch.setenv("VAE_USER_DIR", str(user))
    return shipped, user


class Touch:
    """Unpickling this opens (so creates) the marker file: proof that a loader ran pickle code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def nan_weights(good: bytes) -> bytes:
    state = st_load(good)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    return st_save(state, metadata=_metadata(good))


def edited_latent_dim(good: bytes) -> bytes:
    meta = _metadata(good)
    cfg = json.loads(meta["model_config"])
    cfg["latent_dim"] = cfg["latent_dim"] + 3
    meta["model_config"] = json.dumps(cfg)
    return st_save(st_load(good), metadata=meta)


def edited_meta(good: bytes, **changes) -> bytes:
    """The same weights with metadata fields replaced; `model_config` changes are merged in."""
    meta = _metadata(good)
    if "model_config" in changes:
        changes["model_config"] = json.dumps({**json.loads(meta["model_config"]), **changes["model_config"]})
    return st_save(st_load(good), metadata={**meta, **changes})


def bad_files(good: bytes, marker: Path) -> dict:
    """name -> (bytes, a phrase the refusal must contain)."""
    return {
        "random": (np.random.default_rng(0).bytes(5000), "not a checkpoint or is truncated"),
        "truncated": (good[:len(good) // 2], "not a checkpoint or is truncated"),
        "pickle": (pickle.dumps(Touch(marker)), "not a checkpoint or is truncated"),
        "nan": (nan_weights(good), "NaN or infinite"),
        "latent_dim": (edited_latent_dim(good), "do not fit its config"),
        "empty": (b"", "empty"),
        # A few kB whose config would build an 80 GB model.
        "huge_config": (edited_meta(good, model_config={"hidden": [100000, 100000]}), "are too large"),
        "deep_json": (edited_meta(good, train_config="[" * 100_000 + "]" * 100_000), "damaged or invalid config"),
        # The dataset's name would become part of a file path on the server.
        "dataset_dotdot": (edited_meta(good, dataset="../../../etc/passwd"),
                           "trained on '../../../etc/passwd', which is not one of this app's datasets"),
        "dataset_abs_npz": (edited_meta(good, dataset="/srv/private/faces.npz"),
                            "trained on '/srv/private/faces.npz', which is not one of this app's datasets"),
        "dataset_none": (edited_meta(good, dataset=""), "does not say which dataset it was trained on"),
        "dataset_misfit": (edited_meta(good, dataset="mnist"),
                           "trained on mnist, whose images are 1 x 28 x 28, but its model takes images of 1 x 8 x 8"),
    }


def test_the_pickle_would_run_code_if_unpickled(tmp_path):
    # The control for the pickle case below: this file really does create its marker when unpickled.
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Touch(marker)))
    assert marker.exists()


CASES = ["random", "truncated", "pickle", "nan", "latent_dim", "empty", "huge_config", "deep_json",
         "dataset_dotdot", "dataset_abs_npz", "dataset_none", "dataset_misfit"]


@pytest.mark.parametrize("case", CASES)
def test_bad_checkpoint_is_refused_and_nothing_changes(case, good, folders, tmp_path):
    shipped, user = folders
    marker = tmp_path / "pickle-ran"
    data, phrase = bad_files(good, marker)[case]
    before = snapshot(shipped, user)
    with pytest.raises(CheckpointError, match=phrase):
        uploads.check_checkpoint(data, f"{case}.safetensors")
    with pytest.raises(CheckpointError, match=phrase):
        uploads.save_upload(data, f"my-{case}", user, f"{case}.safetensors")
    assert snapshot(shipped, user) == before
    assert not marker.exists(), "reading the upload ran pickled code"


def test_oversize_upload_is_refused_before_parsing(good, folders):
    shipped, user = folders
    before = snapshot(shipped, user)
    # A valid checkpoint padded past the limit: refused for its size alone.
    data = good + b"\0" * (uploads.APP_UPLOAD_LIMIT_BYTES + 1 - len(good))
    with pytest.raises(CheckpointError, match=f"over this app's upload limit of {uploads.APP_UPLOAD_LIMIT_BYTES // 2**20} MB"):
        uploads.save_upload(data, "big", user)
    assert snapshot(shipped, user) == before


def test_valid_upload_is_saved_once_and_listed(good, folders):
    from explorer import models

    shipped, user = folders
    ckpt = uploads.check_checkpoint(good, SOURCE.name)
    assert ckpt.model_config.latent_dim == 2
    path = uploads.save_upload(good, "my-digits", user)
    assert path == user / "my-digits.safetensors"
    assert path.read_bytes() == good
    listed = {m["name"]: m["source"] for m in models.list_models()}
    assert listed.get("my-digits") == "yours"

    # the same name again is refused, and the first file is untouched
    other = (REPO / "checkpoints" / "digits-d2-ae.safetensors").read_bytes()
    before = snapshot(shipped, user)
    with pytest.raises(CheckpointError, match="already exists: choose another name"):
        uploads.save_upload(other, "my-digits", user)
    assert snapshot(shipped, user) == before
    assert sorted(os.listdir(user)) == ["my-digits.safetensors"]


def test_a_temporary_file_left_by_a_crashed_save_does_not_block_the_name(good, folders):
    from explorer import models
    shipped, user = folders
    stale = user / ".mine.safetensors.upload"        # the fixed temporary name an earlier version used
    stale.write_bytes(b"half a file")
    path = uploads.save_upload(good, "mine", user)
    assert path.read_bytes() == good
    assert stale.read_bytes() == b"half a file"      # a file that is not this save's is left alone
    assert sorted(os.listdir(user)) == [".mine.safetensors.upload", "mine.safetensors"]
    assert [m["name"] for m in models.list_models() if m["source"] == "yours"] == ["mine"]


@pytest.mark.parametrize("name", ["../escape", "a/b", "", "  ", ".hidden", "x" * 81])
def test_unsafe_names_are_refused(name, good, folders, tmp_path):
    shipped, user = folders
    before = snapshot(tmp_path)
    with pytest.raises(CheckpointError):
        uploads.save_upload(good, name, user)
    assert snapshot(tmp_path) == before


def test_suggested_name_is_accepted():
    from vae_core.checkpoints import check_name
    for filename in ["my model (2).safetensors", "../../etc/passwd", "", "ü.safetensors", "a..b.safetensors", "-" * 100 + "x" * 100]:
        assert check_name(uploads.suggest_name(filename)) == uploads.suggest_name(filename)


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_dataset_checks():
    x = (np.random.default_rng(0).random((20, 8, 8)) * 255).astype(np.uint8)
    got_x, got_y = uploads.check_dataset(_npz(x=x, y=np.arange(20) % 10))
    assert got_x.shape == (20, 8, 8) and got_x.max() <= 1.0 and list(got_y[:3]) == [0, 1, 2]
    with pytest.raises(DataError, match="Python objects"):
        uploads.check_dataset(_npz(x=np.array([{"a": 1}] * 3, dtype=object)))
    with pytest.raises(DataError, match="not a readable .npz"):
        uploads.check_dataset(b"not a zip at all")


# ------------------------------------------------------------------ the page under AppTest

def _page():
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception
    return at


def test_page_refuses_bad_files_and_shows_why(good, folders, tmp_path):
    shipped, user = folders
    marker = tmp_path / "pickle-ran"
    before = snapshot(shipped, user)
    at = _page()
    for case, (data, phrase) in bad_files(good, marker).items():
        at.file_uploader(key="upload_ckpt").upload(f"{case}.safetensors", data)
        at.run()
        assert not at.exception, case
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and phrase in errors[0] and "nothing was saved" in errors[0], (case, errors)
        assert not at.success, case
    assert snapshot(shipped, user) == before
    assert not marker.exists()


def test_page_refuses_an_oversize_checkpoint_in_code(good, folders):
    """AppTest hands the bytes straight to the page (no browser enforces maxUploadSize here), so
    this is the page's own check at work."""
    shipped, user = folders
    before = snapshot(shipped, user)
    at = _page()
    big = good + b"\0" * (uploads.APP_UPLOAD_LIMIT_BYTES + 1 - len(good))
    at.file_uploader(key="upload_ckpt").upload("big.safetensors", big)
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "over this app's upload limit of 50 MB" in errors[0] and "nothing was saved" in errors[0]
    assert not at.success and snapshot(shipped, user) == before


def test_page_refuses_a_file_that_fails_in_an_unforeseen_way(good, folders, monkeypatch):
    """A flaw no check foresaw (here: the loader itself raising) is a refusal, not a traceback."""
    from explorer import uploads as page_uploads
    shipped, user = folders
    before = snapshot(shipped, user)

    def flawed(data, where="the file"):
        raise RuntimeError("an unforeseen flaw")

    monkeypatch.setattr(page_uploads, "from_bytes", flawed)
    at = _page()
    at.file_uploader(key="upload_ckpt").upload(SOURCE.name, good)
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "This file was refused, and nothing was saved: it could not be read (RuntimeError): choose a "
        ".safetensors file written by this app or `python -m vae_core train`"]
    assert not at.success

    monkeypatch.setattr(page_uploads, "npz_arrays", flawed)
    at.file_uploader(key="upload_npz").upload("mine.npz", _npz(x=np.zeros((4, 8, 8), np.uint8)))
    at.run()
    assert not at.exception
    assert any(e.value.startswith("This file was refused: it could not be read (RuntimeError)") for e in at.error)
    assert "uploaded_images" not in at.session_state
    assert snapshot(shipped, user) == before


def test_page_saves_a_valid_checkpoint_and_refuses_its_name_twice(good, folders):
    shipped, user = folders
    at = _page()
    assert "none yet" in at.caption[-1].value
    at.file_uploader(key="upload_ckpt").upload(SOURCE.name, good)
    at.run()
    assert not at.exception and not at.error
    assert "valid checkpoint" in at.success[0].value and "2-dimensional" in at.success[0].value
    at.text_input(key="upload_name").input("mine")
    at.button[0].click()
    at.run()
    assert not at.exception and not at.error
    assert any("Saved as **mine**" in s.value for s in at.success)
    assert (user / "mine.safetensors").read_bytes() == good
    assert "mine" in at.caption[-1].value

    at.button[0].click()
    at.run()
    assert [e.value for e in at.error] == ["Not saved: a model named 'mine' already exists: choose another "
                                           "name (nothing was overwritten)"]
    assert sorted(os.listdir(user)) == ["mine.safetensors"]


def test_page_shows_an_uploaded_image_set(folders):
    at = _page()
    x = (np.random.default_rng(1).random((15, 8, 8)) * 255).astype(np.uint8)
    at.file_uploader(key="upload_npz").upload("mine.npz", _npz(x=x, y=np.arange(15) % 5))
    at.run()
    assert not at.exception and not at.error
    assert "15 images of 8 × 8 pixels, 5 distinct labels" in at.success[0].value
    assert at.session_state["uploaded_images"]["x"].shape == (15, 8, 8)

    at.file_uploader(key="upload_npz").upload("bad.npz", b"junk")
    at.run()
    assert not at.exception and "not a readable .npz" in at.error[0].value
    # A refused file loses nothing: the good set uploaded before stays.
    assert "mine.npz (15 images), is kept" in at.error[0].value
    assert at.session_state["uploaded_images"]["name"] == "mine.npz"


def _zeros8(n=4):
    return np.zeros((n, 8, 8), np.uint8)


BAD_IMAGE_SETS = {   # what a student might upload, and a phrase of the reason the page must give
    "wrong key": (dict(images=_zeros8()), "no 'x'"),
    "flat images": (dict(x=np.zeros((4, 64), np.uint8)), "shape (4, 64)"),
    "colour images": (dict(x=np.zeros((4, 3, 8, 8), np.uint8)), "shape (4, 3, 8, 8)"),
    "wrong dtype": (dict(x=np.zeros((4, 8, 8), np.int64)), "int64"),
    "values above 1": (dict(x=np.full((4, 8, 8), 2.0, np.float32)), "scale pixels to [0, 1]"),
    "NaN": (dict(x=np.full((4, 8, 8), np.nan, np.float32)), "NaN"),
    "labels do not match": (dict(x=_zeros8(), y=np.zeros(3, np.int64)), "one label per image"),
    "pickled objects": (dict(x=np.array([None] * 4, dtype=object)), "Python objects"),
}


@pytest.mark.parametrize("case", list(BAD_IMAGE_SETS) + ["too many images"])
def test_page_refuses_each_bad_image_set_and_keeps_the_good_one(case, folders, tmp_path):
    shipped, user = folders
    before = snapshot(shipped, user)
    at = _page()
    good = (np.random.default_rng(2).random((6, 8, 8)) * 255).astype(np.uint8)
    at.file_uploader(key="upload_npz").upload("good.npz", _npz(x=good))
    at.run()
    assert at.session_state["uploaded_images"]["name"] == "good.npz"
    if case == "too many images":   # the header declares one image over the limit; no data follows
        from test_data import npz_declaring
        from vae_core import data as vd
        data = npz_declaring(tmp_path / "many.npz", (vd.MAX_NPZ_IMAGES + 1, 8, 8), body_bytes=64).read_bytes()
        phrase = "more than the limit"
    else:
        arrays, phrase = BAD_IMAGE_SETS[case]
        data = _npz(**arrays)
    at.file_uploader(key="upload_npz").upload("bad.npz", data)
    at.run()
    assert not at.exception, case
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and phrase in errors[0] and "good.npz (6 images), is kept" in errors[0], errors
    kept = at.session_state["uploaded_images"]
    assert kept["name"] == "good.npz" and np.allclose(kept["x"], good / 255.0)
    assert snapshot(shipped, user) == before


def test_a_saved_upload_appears_in_another_pages_model_list(good, folders):
    shipped, user = folders
    at = _page()
    at.file_uploader(key="upload_ckpt").upload(SOURCE.name, good)
    at.run()
    at.text_input(key="upload_name").input("mine")
    at.button[0].click()
    at.run()
    assert (user / "mine.safetensors").is_file()

    from streamlit.testing.v1 import AppTest
    other = AppTest.from_file(str(REPO / "app_pages" / "4_Sampling.py"), default_timeout=120)
    other.run()
    assert not other.exception
    options = other.selectbox(key="sb_vae").options
    assert any(o.startswith("mine") for o in options), options
    other.selectbox(key="sb_vae").set_value("mine")
    other.run()
    assert not other.exception and other.selectbox(key="sb_vae").value == "mine"


def test_a_bad_dataset_name_placed_in_the_folder_is_skipped_and_the_pages_still_work(good, folders):
    """A file that bypassed the upload checks (copied into the folder by hand) is left out of the
    model lists; every page still draws for everyone."""
    from explorer import models
    from streamlit.testing.v1 import AppTest
    shipped, user = folders
    (user / "sneaky.safetensors").write_bytes(edited_meta(good, dataset="../../../etc/passwd"))
    assert "sneaky" not in {m["name"] for m in models.list_models()}
    other = AppTest.from_file(str(REPO / "app_pages" / "4_Sampling.py"), default_timeout=120)
    other.run()
    assert not other.exception and not other.error
    assert "digits" in other.selectbox(key="sb_dataset").options
    assert not any("etc" in o for o in other.selectbox(key="sb_dataset").options)


def test_a_pretrained_name_is_refused_and_an_old_file_of_that_name_never_shadows_it(good, folders):
    """A student cannot save an upload under a pretrained model's name (the page says so, nothing is
    written); a file of that name already in the user folder is listed under its own label and the
    pretrained model stays reachable under its name."""
    from explorer import models
    shipped, user = folders
    from vae_core.errors import CheckpointError
    with pytest.raises(CheckpointError, match="pretrained model"):
        models.check_free_name("digits-d2-vae-b1")
    (user / "digits-d2-vae-b1.safetensors").write_bytes(good)
    infos = models.list_models()
    names = [i["name"] for i in infos]
    assert names.count("digits-d2-vae-b1") == 1
    assert next(i for i in infos if i["name"] == "digits-d2-vae-b1")["source"] == "shipped"
    assert any(n.startswith("digits-d2-vae-b1 [") for n in names), names
