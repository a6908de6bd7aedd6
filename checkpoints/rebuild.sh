#!/usr/bin/env bash
# Rebuild every shipped model, its metrics, its precomputed maps and the table in README.md.
# Needs MNIST's IDX files under $VAE_DATA_DIR/mnist (or a network for the download).
# Run from anywhere:  VAE_DATA_DIR=/path/to/data bash checkpoints/rebuild.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=checkpoints
FAMILY="--dataset mnist --hidden 400 --lr-decay 0.97 --betas 0.5,1,2,4,8 --seed 0 --half --quiet --overwrite"

# The 2-D family (the latent space is the map) and the 20-D family (the t-SNE/UMAP family).
python -m vae_core sweep $FAMILY --latent-dim 2 --epochs 30 --out-dir $OUT --prefix mnist-d2
python -m vae_core sweep $FAMILY --latent-dim 20 --epochs 80 --out-dir $OUT --prefix mnist-d20
# A binarised-MNIST VAE, for comparison with published log-likelihoods.
python -m vae_core sweep --dataset mnist --binarize --hidden 512,512 --latent-dim 32 --epochs 200 \
  --lr-decay 0.99 --betas 1 --no-ae --seed 0 --half --quiet --overwrite --out-dir $OUT --prefix mnist-bin-d32
# The 2-D pair again with a Gaussian likelihood, sigma = 0.1 (the CLI's default): same network,
# data, seed and schedule as mnist-d2, so the pages can set Bernoulli beside Gaussian. The pair
# has its own run group (shipped-mnist-d2-gauss), so it never mixes with the Bernoulli family.
python -m vae_core sweep $FAMILY --betas 1 --likelihood gaussian --sigma 0.1 --latent-dim 2 --epochs 30 \
  --out-dir $OUT --prefix mnist-d2-gauss
# The 8x8 digits pair: retrains in seconds on any machine.
python -m vae_core sweep --dataset digits --hidden 128 --latent-dim 2 --epochs 100 --batch-size 64 \
  --betas 1 --seed 0 --half --quiet --overwrite --out-dir $OUT --prefix digits-d2
# Every file says it is a pretrained model and which family it belongs to (its run record:
# owner "shipped", group shipped-<dataset>-d<latent size>); weights, and so maps, are untouched.
python -c "from vae_core.shipped import mark_shipped; mark_shipped('$OUT', log=print)"

# The digit classifier that scores decoded prior samples, then every model's metrics.
python -m vae_core classifier --dataset mnist --out $OUT/classifiers/mnist-classifier.safetensors
python -m vae_core classifier --dataset digits --epochs 60 --out $OUT/classifiers/digits-classifier.safetensors
for f in $OUT/*.safetensors; do
  python -m vae_core evaluate "$f" --iw-samples 1000 --write
done
# Precomputed 2-D maps of the exploration set for the app, and the table of metrics.
python -m vae_core maps $OUT
# The exact log p(x) of every 2-D VAE, by which the True posterior page ranks a family.
python -m vae_core exact $OUT
python -m vae_core table $OUT --readme $OUT/README.md
