"""Configuration dataclasses. A ModelConfig rebuilds a model on its own; both travel in checkpoints."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .errors import ConfigError

MODEL_KINDS = ("vae", "ae")
ARCHS = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian", "gaussian_learned")

# Upper bounds, so that a config (one typed in, or one read from an uploaded file) cannot ask for
# a model of many gigabytes. The shipped models use hidden (400,) or (512, 512) on 28x28 images;
# image sets are 8 to 64 pixels a side; these limits leave room far beyond that.
MAX_IMAGE_SIDE = 64
MAX_IMAGE_CHANNELS = 4
MAX_HIDDEN_WIDTH = 8192
MAX_HIDDEN_LAYERS = 8
MAX_CONV_CHANNELS = 1024
MAX_CONV_LAYERS = 6


def _plain_numbers(cfg) -> None:
    """Turn NumPy scalars into Python numbers, in place.

    Widgets and arrays hand out np.int64 and np.float32: without this, validation refuses
    them with a puzzling message, or they pass and JSON cannot store them in a checkpoint.
    """
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if type(v).__module__ == "numpy" and hasattr(v, "item") and getattr(v, "ndim", None) == 0:
            setattr(cfg, f.name, v.item())


def _is_int(v) -> bool:
    """A whole number, not a bool (True would pass isinstance(v, int) and mean 1)."""
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    """A finite real number, not a bool or text: text would make math.isfinite raise TypeError."""
    import math
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class ModelConfig:
    kind: str = "vae"              # "vae" (Gaussian posterior, sampled z) or "ae" (deterministic code)
    arch: str = "mlp"              # "mlp" (fully connected) or "conv" (small convolutional net)
    image_shape: tuple = (1, 28, 28)  # (channels, height, width)
    latent_dim: int = 20           # d, from 1 to 256
    hidden: tuple = (400,)         # MLP hidden sizes, encoder order; the decoder mirrors them
    channels: tuple = (32, 64)     # conv channels, encoder order; the decoder mirrors them
    likelihood: str = "bernoulli"  # p(x|z): "bernoulli", "gaussian" (fixed sigma) or "gaussian_learned"
    gaussian_sigma: float = 0.1    # the fixed pixel standard deviation for likelihood="gaussian"

    def __post_init__(self):
        _plain_numbers(self)
        for name in ("image_shape", "hidden", "channels"):
            value = getattr(self, name)
            try:
                setattr(self, name, tuple(int(v) for v in value))
            except (TypeError, ValueError):
                # Raised as ConfigError so callers that catch config problems see this one too.
                raise ConfigError(f"{name} {value!r} is invalid: give a tuple of whole numbers") from None
        self.validate()

    def validate(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ConfigError(f"model kind {self.kind!r} is unknown: use one of {', '.join(MODEL_KINDS)}")
        if self.arch not in ARCHS:
            raise ConfigError(f"architecture {self.arch!r} is unknown: use one of {', '.join(ARCHS)}")
        if self.likelihood not in LIKELIHOODS:
            raise ConfigError(f"likelihood {self.likelihood!r} is unknown: use one of {', '.join(LIKELIHOODS)}")
        if not _is_int(self.latent_dim) or not 1 <= self.latent_dim <= 256:
            raise ConfigError(f"latent size {self.latent_dim!r} is out of range: use an integer from 1 to 256")
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ConfigError(f"image shape {self.image_shape!r} is invalid: use (channels, height, width)")
        c, h, w = self.image_shape
        if c > MAX_IMAGE_CHANNELS or max(h, w) > MAX_IMAGE_SIDE:
            raise ConfigError(f"image shape {self.image_shape!r} is too large: use at most {MAX_IMAGE_CHANNELS} "
                              f"channels and {MAX_IMAGE_SIDE} pixels a side, e.g. (1, 28, 28)")
        if self.arch == "conv" and (h < 8 or w < 8):
            raise ConfigError(f"images of {h}x{w} are too small for the conv architecture: use at least 8x8 or arch='mlp'")
        if self.arch == "mlp" and (not self.hidden or min(self.hidden) < 1):
            raise ConfigError(f"hidden sizes {self.hidden!r} are invalid: give at least one positive size, e.g. 400 or 512,256")
        if len(self.hidden) > MAX_HIDDEN_LAYERS or (self.hidden and max(self.hidden) > MAX_HIDDEN_WIDTH):
            raise ConfigError(f"hidden sizes {self.hidden!r} are too large: use at most {MAX_HIDDEN_LAYERS} layers "
                              f"of at most {MAX_HIDDEN_WIDTH} units, e.g. 400 or 512,256")
        if self.arch == "conv" and (not self.channels or min(self.channels) < 1):
            raise ConfigError(f"conv channels {self.channels!r} are invalid: give positive sizes, e.g. 32,64")
        if len(self.channels) > MAX_CONV_LAYERS or (self.channels and max(self.channels) > MAX_CONV_CHANNELS):
            raise ConfigError(f"conv channels {self.channels!r} are too large: use at most {MAX_CONV_LAYERS} layers "
                              f"of at most {MAX_CONV_CHANNELS} channels, e.g. 32,64")
        if not (_is_number(self.gaussian_sigma) and self.gaussian_sigma > 0):
            raise ConfigError(f"gaussian_sigma {self.gaussian_sigma!r} must be positive: use a pixel standard deviation such as 0.1")

    @property
    def n_pixels(self) -> int:
        c, h, w = self.image_shape
        return c * h * w

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model config keys {sorted(unknown)}: this file was written by another version")
        return cls(**d)


PRECISIONS = ("auto", "float32", "bfloat16")


@dataclass
class TrainConfig:
    dataset: str = "mnist"         # "mnist", "fashion-mnist", "digits" or a path to an .npz file
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3               # Adam learning rate
    beta: float = 1.0              # weight of the KL term; 1 gives the ELBO. Ignored by the AE
    warmup_epochs: float = 0.0     # linear KL warm-up: beta rises from 0 over this many epochs
    free_bits: float = 0.0         # floor (nats) on the batch-mean KL of each latent dimension
    binarize: bool = False         # dynamic binarisation: resample x ~ Bernoulli(pixels) each batch
    seed: int = 0
    device: str = "auto"           # "auto" picks CUDA when present, else the CPU
    lr_decay: float = 1.0          # multiply the learning rate by this after each epoch
    max_train: int = 0             # use only the first N training images (0: all)
    precision: str = "auto"        # matrix multiplies in training: "float32", "bfloat16" (mixed precision:
                                   # bf16 multiplies, float32 weights, optimiser, sampling and loss) or
                                   # "auto" (bfloat16 where the device multiplies it natively, else float32)

    def __post_init__(self):
        _plain_numbers(self)
        self.validate()

    def validate(self) -> None:
        def bad(name, value, rule):
            raise ConfigError(f"{name} = {value!r} is invalid: {rule}")
        if not _is_int(self.epochs) or self.epochs < 1:
            bad("epochs", self.epochs, "use a whole number of at least 1")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            bad("batch size", self.batch_size, "use a whole number of at least 1")
        if not (_is_number(self.lr) and self.lr > 0):
            bad("learning rate", self.lr, "use a positive number such as 1e-3")
        if not (_is_number(self.beta) and self.beta >= 0):
            bad("beta", self.beta, "use a number of at least 0 (1 gives the ELBO)")
        if not (_is_number(self.warmup_epochs) and self.warmup_epochs >= 0):
            bad("warm-up epochs", self.warmup_epochs, "use 0 or more")
        if not (_is_number(self.free_bits) and self.free_bits >= 0):
            bad("free bits", self.free_bits, "use 0 or more nats per dimension")
        if not (_is_number(self.lr_decay) and 0 < self.lr_decay <= 1):
            bad("lr decay", self.lr_decay, "use a factor in (0, 1]")
        if not _is_int(self.seed) or not 0 <= self.seed < 2**63:
            bad("seed", self.seed, "use a whole number of at least 0 and below 2**63, e.g. 0 or 42")
        if not _is_int(self.max_train) or self.max_train < 0:
            bad("max_train", self.max_train, "use 0 (all the training images) or a positive count")
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            bad("dataset", self.dataset, "use mnist, fashion-mnist, digits or the path of an .npz file")
        if self.precision not in PRECISIONS:
            bad("precision", self.precision, "use " + ", ".join(PRECISIONS))
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            bad("device", self.device, "use auto, cpu or cuda")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
