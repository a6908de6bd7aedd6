"""Waiting on training jobs of the real local Ray queue (vae_core.jobs) in tests."""
import time

from vae_core import jobs


class Job:
    """A job seen through its owner's token: each attribute read asks the queue for a fresh view."""

    def __init__(self, owner: str):
        self.owner = owner

    def view(self):
        return jobs.view(self.owner)

    def wait(self, timeout: float = 120, until=None) -> bool:
        """Poll until the job is done (or `until(view)` holds); False on timeout."""
        until = until or (lambda v: v.done)
        t0 = time.time()
        while time.time() - t0 < timeout:
            v = jobs.view(self.owner)
            if v is not None and until(v):
                return True
            time.sleep(0.2)
        return False

    def __getattr__(self, name):
        return getattr(jobs.view(self.owner), name)
