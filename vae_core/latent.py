"""Tools for looking at a latent space: encode data, decode grids over a plane, interpolate,
sample the prior, traverse one dimension, find a class direction, tile images into a mosaic.

Every decoder call runs under torch.no_grad and returns NumPy images in [0, 1]
(sigmoid of the decoder's logits, the mean of p(x|z)) shaped [N, C, H, W].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch

from .data import ImageData
from .errors import ConfigError, DataError

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[float]]


def _device(model) -> torch.device:
    return next(model.parameters()).device


# ---------------------------------------------------------------- encode and decode

@torch.no_grad()
def encode_data(model, data: Union[ImageData, torch.Tensor, np.ndarray],
                batch_size: int = 1000) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Posterior parameters of every image: x [N, C, H, W] -> (mu [N, d], logvar [N, d] or None).

    For the AE, mu is the code z and logvar is None.
    """
    if isinstance(data, ImageData):
        x = data.x
    elif isinstance(data, torch.Tensor):
        x = data
    else:
        x = torch.as_tensor(np.asarray(data))
    x = x.float()
    if x.ndim == 3:                                   # [N, H, W] without the channel axis
        x = x.unsqueeze(1)
    if tuple(x.shape[1:]) != tuple(model.cfg.image_shape):
        raise DataError(f"images of shape {tuple(x.shape[1:])} do not fit this model, which reads "
                        f"{tuple(model.cfg.image_shape)}: choose data from the model's dataset")
    model.eval()
    device = _device(model)
    mus, logvars = [], []
    for i in range(0, x.shape[0], batch_size):
        mu, logvar = model.encode(x[i:i + batch_size].to(device))
        mus.append(mu.cpu())
        if logvar is not None:
            logvars.append(logvar.cpu())
    d = model.cfg.latent_dim
    mu = torch.cat(mus).numpy() if mus else np.zeros((0, d), np.float32)
    if model.cfg.kind != "vae":
        return mu, None
    return mu, (torch.cat(logvars).numpy() if logvars else np.zeros((0, d), np.float32))


@torch.no_grad()
def decode(model, z: ArrayLike, batch_size: int = 1000) -> np.ndarray:
    """Mean images sigmoid(decode(z)): z [N, d] (or [d]) -> [N, C, H, W] float32 in [0, 1]."""
    z = torch.as_tensor(np.asarray(z, dtype=np.float32)) if not isinstance(z, torch.Tensor) else z.float()
    if z.ndim == 1:
        z = z.unsqueeze(0)
    d = model.cfg.latent_dim
    if z.ndim != 2 or z.shape[1] != d:
        raise ConfigError(f"latent codes of shape {tuple(z.shape)} do not fit this model: give [N, {d}]")
    model.eval()
    device = _device(model)
    parts = [torch.sigmoid(model.decode(z[i:i + batch_size].to(device))).cpu()
             for i in range(0, z.shape[0], batch_size)]
    if not parts:
        return np.zeros((0, *model.cfg.image_shape), np.float32)
    return torch.cat(parts).numpy()


# ---------------------------------------------------------------- mosaic

def mosaic(images: np.ndarray, ncols: int, pad: int = 0, pad_value: float = 1.0) -> np.ndarray:
    """Tile images [N, 1, H, W] into one 2-D array [rows*H + (rows-1)*pad, ncols*W + (ncols-1)*pad],
    row by row; empty cells at the end are pad_value. Colour images [N, C, H, W] give [.., .., C]."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ConfigError(f"mosaic needs images [N, C, H, W], got shape {images.shape}")
    if ncols < 1:
        raise ConfigError(f"ncols = {ncols} must be at least 1")
    n, c, h, w = images.shape
    rows = max(1, -(-n // ncols))
    out = np.full((rows * h + (rows - 1) * pad, ncols * w + (ncols - 1) * pad, c), pad_value,
                  dtype=images.dtype if n else np.float32)
    for i in range(n):
        r, col = divmod(i, ncols)
        top, left = r * (h + pad), col * (w + pad)
        out[top:top + h, left:left + w] = images[i].transpose(1, 2, 0)
    return out[..., 0] if c == 1 else out


# ---------------------------------------------------------------- grid over a plane

@dataclass
class LatentGrid:
    """n_rows x n_cols decoded images over a plane z = origin + u * basis[0] + v * basis[1].

    image: the mosaic [n_rows*H, n_cols*W]; row 0 (top) is the largest v, so the picture reads
    like a map with v pointing up. u: [n_cols] and v: [n_rows] plane coordinates (v ascending),
    z: [n_rows * n_cols, d] the decoded codes in mosaic order, uv: [n_rows * n_cols, 2] their
    plane coordinates; origin [d], basis [2, d] (orthonormal rows); labels names the axes.
    """
    image: np.ndarray
    z: np.ndarray
    uv: np.ndarray
    u: np.ndarray
    v: np.ndarray
    origin: np.ndarray
    basis: np.ndarray
    labels: tuple


def _normal_quantile(p: float) -> float:
    return float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(float(p), dtype=torch.float64)))


def latent_plane(codes: np.ndarray, plane: str = "dims", dims: tuple = (0, 1)) -> tuple:
    """The plane a grid spans: (origin [d], basis [2, d], axis labels).

    plane="dims": dimensions dims[0], dims[1], the others held at the data mean of the codes
      (the origin is 0 along the two chosen dimensions, so u and v are those z values).
    plane="pca": the first two principal components of the codes [N, d], through their mean.
    When d = 2 the plane is the latent space itself, whatever is asked (origin 0, identity basis).
    """
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or codes.shape[0] < 1:
        raise DataError(f"codes must be [N, d] with N >= 1, got shape {codes.shape}")
    d = codes.shape[1]
    if d < 2:
        raise ConfigError("a 2-D grid needs a latent space of at least 2 dimensions; this model has 1")
    if d == 2:
        return np.zeros(2), np.eye(2), ("z0", "z1")
    mean = codes.mean(axis=0)
    if plane == "dims":
        i, j = (int(v) for v in dims)
        if not (0 <= i < d and 0 <= j < d) or i == j:
            raise ConfigError(f"dims {tuple(dims)} must be two different dimensions from 0 to {d - 1}")
        origin = mean.copy()
        origin[[i, j]] = 0.0
        basis = np.zeros((2, d))
        basis[0, i] = basis[1, j] = 1.0
        return origin, basis, (f"z{i}", f"z{j}")
    if plane == "pca":
        if codes.shape[0] < 3:
            raise DataError("the PCA plane needs at least 3 codes")
        _, _, vt = np.linalg.svd(codes - mean, full_matrices=False)
        basis = vt[:2].copy()
        # SVD signs are arbitrary; fix them so the same codes always give the same picture.
        for r in range(2):
            if basis[r, np.argmax(np.abs(basis[r]))] < 0:
                basis[r] *= -1
        return mean, basis, ("PC1", "PC2")
    raise ConfigError(f"plane {plane!r} is unknown: use 'dims' or 'pca'")


def latent_grid(model, codes: np.ndarray, n: int = 15, plane: str = "dims", dims: tuple = (0, 1),
                span: str = "prior", quantile: float = 0.05, pad: int = 0) -> LatentGrid:
    """Decode an n x n grid over a 2-D plane of latent space (see latent_plane).

    span="prior": each axis runs over the central part of N(0, 1), from its quantile q to 1 - q
      (q = 0.05 gives -1.645 .. 1.645), measured from the plane's origin.
    span="data": each axis runs over the q .. 1 - q percentiles of the codes projected on it.
    codes: [N, d], the encoded data (used for the mean, the PCA plane and the data span).
    """
    if not 2 <= int(n) <= 100:
        raise ConfigError(f"grid size n = {n} is out of range: use 2 to 100")
    if not 0.0 < quantile < 0.5:
        raise ConfigError(f"quantile {quantile} is out of range: use a number in (0, 0.5), e.g. 0.05")
    origin, basis, labels = latent_plane(codes, plane, dims)
    if span == "prior":
        lo, hi = _normal_quantile(quantile), _normal_quantile(1 - quantile)
        u = v = np.linspace(lo, hi, n)
    elif span == "data":
        proj = (np.asarray(codes, dtype=np.float64) - origin) @ basis.T       # [N, 2]
        (ulo, vlo), (uhi, vhi) = np.percentile(proj, [100 * quantile, 100 * (1 - quantile)], axis=0)
        u, v = np.linspace(ulo, uhi, n), np.linspace(vlo, vhi, n)
    else:
        raise ConfigError(f"span {span!r} is unknown: use 'prior' or 'data'")
    uu, vv = np.meshgrid(u, v[::-1])                  # top row = largest v
    uv = np.stack([uu.ravel(), vv.ravel()], axis=1)
    z = origin + uv @ basis
    images = decode(model, z)
    return LatentGrid(mosaic(images, n, pad=pad), z.astype(np.float32), uv, u, v, origin, basis, labels)


# ---------------------------------------------------------------- interpolation

def lerp(z0: ArrayLike, z1: ArrayLike, t: ArrayLike) -> np.ndarray:
    """Linear interpolation (1 - t) z0 + t z1: z0, z1 [d], t scalar or [T] -> [d] or [T, d]."""
    z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
    t = np.asarray(t, np.float64)
    return (1 - t)[..., None] * z0 + t[..., None] * z1 if t.ndim else (1 - t) * z0 + t * z1


def slerp(z0: ArrayLike, z1: ArrayLike, t: ArrayLike, eps: float = 1e-7) -> np.ndarray:
    """Spherical interpolation (Shoemake, 1985; White, 2016 for generative models):

        slerp(z0, z1; t) = sin((1 - t) W) / sin W * z0 + sin(t W) / sin W * z1,
        W = angle between z0 and z1.

    Unit vectors stay on the unit sphere. When z0 and z1 are (anti)parallel the arc is not
    defined by them: it falls back to lerp. z0, z1 [d], t scalar or [T] -> [d] or [T, d].
    """
    z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
    t = np.asarray(t, np.float64)
    n0, n1 = np.linalg.norm(z0), np.linalg.norm(z1)
    if n0 < eps or n1 < eps:
        return lerp(z0, z1, t)
    cos = np.clip(np.dot(z0, z1) / (n0 * n1), -1.0, 1.0)
    omega = np.arccos(cos)
    so = np.sin(omega)
    if so < 1e-6:
        return lerp(z0, z1, t)
    a, b = np.sin((1 - t) * omega) / so, np.sin(t * omega) / so
    return a[..., None] * z0 + b[..., None] * z1 if t.ndim else a * z0 + b * z1


INTERPOLATIONS = {"lerp": lerp, "slerp": slerp}


def interpolate(z0: ArrayLike, z1: ArrayLike, steps: int = 10, method: str = "lerp") -> np.ndarray:
    """Codes from z0 to z1, endpoints included: [steps, d]."""
    if method not in INTERPOLATIONS:
        raise ConfigError(f"interpolation {method!r} is unknown: use one of {', '.join(INTERPOLATIONS)}")
    if int(steps) < 2:
        raise ConfigError(f"steps = {steps} must be at least 2 (the two endpoints)")
    return INTERPOLATIONS[method](z0, z1, np.linspace(0.0, 1.0, int(steps))).astype(np.float32)


# ---------------------------------------------------------------- prior, traversals, directions

def prior_samples(model, n: int = 16, seed: int = 0, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """z ~ N(0, temperature^2 I) and its decoded images: (z [n, d], images [n, C, H, W])."""
    if n < 1:
        raise ConfigError(f"n = {n} must be at least 1")
    if not temperature > 0:
        raise ConfigError(f"temperature {temperature} must be positive (1 samples the prior itself)")
    gen = torch.Generator().manual_seed(int(seed))
    z = temperature * torch.randn((n, model.cfg.latent_dim), generator=gen)
    return z.numpy(), decode(model, z)


def traverse(model, z: ArrayLike, dim: int, values: ArrayLike) -> np.ndarray:
    """Change one dimension of z [d] through values [T], the rest fixed: images [T, C, H, W]."""
    z = np.asarray(z, np.float32).reshape(-1)
    d = z.shape[0]
    if not 0 <= int(dim) < d:
        raise ConfigError(f"dimension {dim} does not exist: use 0 to {d - 1}")
    values = np.asarray(values, np.float32).reshape(-1)
    zs = np.repeat(z[None], len(values), axis=0)
    zs[:, int(dim)] = values
    return decode(model, zs)


def traversal_grid(model, z: ArrayLike, dims: Sequence[int], values: ArrayLike,
                   pad: int = 0) -> np.ndarray:
    """traverse for each of dims, one mosaic row per dimension: [len(dims)*H, len(values)*W]."""
    rows = [traverse(model, z, d, values) for d in dims]
    return mosaic(np.concatenate(rows), len(np.asarray(values).reshape(-1)), pad=pad)


def class_direction(codes: np.ndarray, labels: ArrayLike, a, b) -> np.ndarray:
    """mean(codes of class b) - mean(codes of class a): the vector from class a to class b, [d]."""
    codes, labels = np.asarray(codes), np.asarray(labels)
    means = []
    for c in (a, b):
        mask = labels == c
        if not mask.any():
            raise DataError(f"class {c!r} has no codes: choose one of {sorted(set(labels.tolist()))}")
        means.append(codes[mask].mean(axis=0))
    return (means[1] - means[0]).astype(np.float32)
