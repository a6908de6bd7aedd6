"""Shared by the tests that prove "nothing else changed": a fingerprint of every file in folders."""
import hashlib
from pathlib import Path


def snapshot(*folders) -> dict:
    """Every file under the folders (hidden ones included) with its sha256."""
    out = {}
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out
