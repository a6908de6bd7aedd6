"""A Markdown table of checkpoints and their stored metrics (for checkpoints/README.md)."""
from __future__ import annotations

from .checkpoints import list_checkpoints

COLUMNS = [  # (header, metrics key, format)
    ("test loss", "loss", "{:.2f}"),
    ("recon", "recon", "{:.2f}"),
    ("KL", "kl", "{:.2f}"),
    ("log p(x) (IW)", "log_px", "{:.2f}"),
    ("K", "iw_samples", "{:d}"),
    ("active units", "active_units", "{:d}"),
    ("kNN acc", "knn_acc", "{:.3f}"),
    ("prior conf.", "prior_confidence", "{:.3f}"),
    ("prior score", "prior_classifier_score", "{:.2f}"),
    ("prior class entropy", "prior_class_entropy_norm", "{:.3f}"),
]


def _fmt(fmt: str, value) -> str:
    if value is None:
        return "–"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def describe(info: dict) -> str:
    """A short architecture string, e.g. 'VAE β=4, mlp 784-400-20, bernoulli'."""
    mc, tc = info["model_config"], info["train_config"]
    c, h, w = mc.image_shape
    if mc.arch == "mlp":
        arch = "mlp " + "-".join(str(v) for v in (c * h * w, *mc.hidden, mc.latent_dim))
    else:
        arch = "conv " + "-".join(str(v) for v in mc.channels) + f" d={mc.latent_dim}"
    kind = f"VAE β={tc.beta:g}" if mc.kind == "vae" and tc else mc.kind.upper()
    extra = ", binarised" if tc and tc.binarize else ""
    epochs = f", {tc.epochs} ep" if tc else ""
    return f"{kind}, {arch}, {mc.likelihood}{extra}{epochs}"


def markdown_table(*folders) -> str:
    rows = ["| model | what | " + " | ".join(h for h, _, _ in COLUMNS) + " |",
            "|---|---|" + "---|" * len(COLUMNS)]
    for info in list_checkpoints(*folders):
        m = info["metrics"]
        cells = [_fmt(fmt, m.get(key)) for _, key, fmt in COLUMNS]
        rows.append(f"| {info['name']} | {describe(info)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
