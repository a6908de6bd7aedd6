"""The exceptions vae_core raises at its boundaries. Each message names the bad value and the fix."""


class VaeCoreError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""


class ConfigError(VaeCoreError, ValueError):
    """A model or training setting is out of range."""


class DataError(VaeCoreError):
    """A dataset is missing, corrupt or of the wrong shape."""


class CheckpointError(VaeCoreError):
    """A checkpoint file cannot be trusted or does not exist."""


class TrainingDiverged(VaeCoreError):
    """The loss became NaN or infinite; the last good weights were restored.

    `result` holds the FitResult of the epochs that finished before it happened.
    """

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result
