"""The AE and the VAE: one encoder/decoder design, different only where the maths differs.

The VAE encoder returns a mean and a log-variance per latent dimension and samples
z = mu + eps * sigma with eps ~ N(0, I) (the reparameterisation, so gradients reach the
encoder). The AE encoder returns z itself. Both decoders return logits; the image is
sigmoid(logits).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import nn

from .config import ModelConfig


class ForwardOutput(NamedTuple):
    logits: torch.Tensor            # [B, C, H, W] decoder output before the sigmoid
    mu: torch.Tensor                # [B, d] posterior mean (the AE's code)
    logvar: Optional[torch.Tensor]  # [B, d] posterior log-variance; None for the AE
    z: torch.Tensor                 # [B, d] the code the decoder saw


def _conv_sizes(h: int, w: int, n: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 conv (kernel 4, padding 1): s -> floor(s / 2)."""
    sizes = [(h, w)]
    for _ in range(n):
        h, w = h // 2, w // 2
        sizes.append((h, w))
    return sizes


class Encoder(nn.Module):
    """x [B, C, H, W] -> features [B, F]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c, h, w = cfg.image_shape
        if cfg.arch == "mlp":
            layers, width = [nn.Flatten()], cfg.n_pixels
            for size in cfg.hidden:
                layers += [nn.Linear(width, size), nn.ReLU()]
                width = size
        else:
            n = _n_conv_layers(cfg)
            layers, ch = [], c
            for out_ch in cfg.channels[:n]:
                layers += [nn.Conv2d(ch, out_ch, 4, stride=2, padding=1), nn.ReLU()]
                ch = out_ch
            fh, fw = _conv_sizes(h, w, n)[-1]
            layers += [nn.Flatten()]
            width = ch * fh * fw
        self.net = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _n_conv_layers(cfg: ModelConfig) -> int:
    # Halve the image at most until it is 2 pixels on its short side.
    c, h, w = cfg.image_shape
    return max(1, min(len(cfg.channels), int(math.log2(min(h, w) / 2))))


class Decoder(nn.Module):
    """z [B, d] -> logits [B, C, H, W]; mirrors the encoder."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.image_shape = cfg.image_shape
        c, h, w = cfg.image_shape
        if cfg.arch == "mlp":
            layers, width = [], cfg.latent_dim
            for size in reversed(cfg.hidden):
                layers += [nn.Linear(width, size), nn.ReLU()]
                width = size
            layers += [nn.Linear(width, cfg.n_pixels)]
        else:
            n = _n_conv_layers(cfg)
            sizes = _conv_sizes(h, w, n)
            chans = list(cfg.channels[:n])
            fh, fw = sizes[-1]
            layers = [nn.Linear(cfg.latent_dim, chans[-1] * fh * fw), nn.ReLU(),
                      nn.Unflatten(1, (chans[-1], fh, fw))]
            targets = list(reversed(sizes[:-1]))       # sizes to reach, smallest first
            outs = list(reversed(chans[:-1])) + [c]
            ch = chans[-1]
            for i, ((th, tw), out_ch) in enumerate(zip(targets, outs)):
                (sh, sw) = sizes[n - i]
                pad = (th - 2 * sh, tw - 2 * sw)       # output_padding 0 or 1 restores odd sizes
                layers += [nn.ConvTranspose2d(ch, out_ch, 4, stride=2, padding=1, output_padding=pad)]
                if i < n - 1:
                    layers += [nn.ReLU()]
                ch = out_ch
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.image_shape)


class _Base(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        if cfg.likelihood == "gaussian_learned":
            # One learned log-variance per pixel of p(x|z) = N(sigmoid(logits), exp(x_logvar)).
            self.x_logvar = nn.Parameter(torch.full(cfg.image_shape, -2.0))
        else:
            self.x_logvar = None

    @property
    def latent_dim(self) -> int:
        return self.cfg.latent_dim

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, d] -> logits [B, C, H, W]."""
        return self.decoder(z)

    @torch.no_grad()
    def decode_image(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, d] -> the mean image sigmoid(logits) in [0, 1], [B, C, H, W]."""
        return torch.sigmoid(self.decoder(z))

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] -> the deterministic code [B, d]: the VAE's mean, the AE's z."""
        return self.encode(x)[0]


class VAE(_Base):
    """q(z|x) = N(mu(x), diag(exp(logvar(x)))), p(z) = N(0, I)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.head = nn.Linear(self.encoder.out_features, 2 * cfg.latent_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, H, W] -> (mu [B, d], logvar [B, d])."""
        mu, logvar = self.head(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + eps * sigma, eps ~ N(0, I); differentiable in mu and logvar."""
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def forward(self, x: torch.Tensor, sample: bool = True) -> ForwardOutput:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar) if sample else mu
        return ForwardOutput(self.decode(z), mu, logvar, z)


class AE(_Base):
    """A deterministic auto-encoder with the VAE's encoder and decoder: z = f(x)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.head = nn.Linear(self.encoder.out_features, cfg.latent_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """x [B, C, H, W] -> (z [B, d], None): a point, not a distribution."""
        return self.head(self.encoder(x)), None

    def forward(self, x: torch.Tensor, sample: bool = True) -> ForwardOutput:
        z, _ = self.encode(x)
        return ForwardOutput(self.decode(z), z, None, z)


MODELS = {"vae": VAE, "ae": AE}


def build_model(cfg: ModelConfig, generator: "torch.Generator | None" = None) -> nn.Module:
    """The model of a config. With a generator, its initial weights come from that generator
    alone (PyTorch's default initialisation, drawn from it), not from the global seed: two
    models built from generators seeded alike start from the same weights, whatever else runs."""
    model = MODELS[cfg.kind](cfg)
    if generator is not None:
        init_weights(model, generator)
    return model


@torch.no_grad()
def init_weights(model: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default initialisation of Linear, Conv2d and ConvTranspose2d layers (weights
    Kaiming-uniform with a = sqrt(5), biases uniform in +-1/sqrt(fan_in)), drawn from `generator`."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
