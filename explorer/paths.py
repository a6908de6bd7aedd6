"""Where the app finds models and data. Environment variables let tests point elsewhere."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def shipped_dir() -> Path:
    """Pretrained checkpoints shipped with the app (read-only by convention)."""
    return Path(os.environ.get("VAE_CHECKPOINT_DIR", REPO / "checkpoints"))


def user_dir() -> Path:
    """Models trained or uploaded in the app."""
    return Path(os.environ.get("VAE_USER_DIR", REPO / "user_models"))


def exploration_dir() -> Path:
    """The shipped exploration data (images and labels the views show)."""
    return shipped_dir() / "data"


def maps_dir() -> Path:
    """Precomputed 2-D maps shipped beside the checkpoints."""
    return shipped_dir() / "maps"


def shown(path: Path, variable: str) -> str:
    """A folder as the page may show it: relative to the app's folder when inside it, else the
    environment variable that set it ("$VAE_USER_DIR"). A server's absolute paths are never shown
    to the students who visit it."""
    try:
        return str(Path(path).resolve().relative_to(REPO.resolve()))
    except ValueError:
        return f"${variable}"
