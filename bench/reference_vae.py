"""The reference for bench_train.py: PyTorch's well-known VAE example (pytorch/examples, vae/main.py),
written out faithfully so that our training loop is timed against the recipe most people start from.

What is the same as the example:
- the 784-400-20 model: fc1 784->400, fc21 and fc22 400->20 (mean and log-variance),
  fc3 20->400, fc4 400->784, ReLU, a sigmoid on the output;
- loss = binary cross-entropy summed over pixels and images + the closed-form KL,
  -1/2 * sum(1 + logvar - mu^2 - exp(logvar)) (Kingma and Welling 2014, appendix B);
- Adam with lr 1e-3 and PyTorch's default options, batch size 128, a shuffled training set;
- the data reach the model one image at a time through a torch Dataset and a DataLoader with
  the default collate (num_workers=0, the example's setting on a CPU): each item is a uint8 image
  turned into a PIL image (as torchvision's MNIST dataset does) and then into a float tensor in
  [0, 1] of shape [1, 28, 28] (as torchvision's ToTensor does);
- train() and test() per epoch, the losses summed with .item() per batch and divided by the
  number of images.

What is left out: torchvision itself (not installed here; the IDX files are read with
vae_core.data.read_idx and converted per item as above), the log line every 10 batches and the
sample images saved each epoch (printing and PNG writing would only add noise to the timing).

Run on its own: VAE_DATA_DIR=/path/holding/mnist python bench/reference_vae.py --epochs 2
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn, optim
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vae_core.data import IDX_FILES, data_dir, read_idx  # noqa: E402

try:
    from PIL import Image
except ImportError:   # PIL only mirrors torchvision's per-item path; the tensor is the same without it
    Image = None


def to_tensor(pic) -> torch.Tensor:
    """torchvision.transforms.ToTensor for a greyscale image: H x W uint8 -> [1, H, W] float in [0, 1]."""
    arr = np.array(pic, np.uint8, copy=True)
    img = torch.from_numpy(arr).view(arr.shape[0], arr.shape[1], 1)
    img = img.permute((2, 0, 1)).contiguous()
    return img.to(dtype=torch.get_default_dtype()).div(255)


class MNISTIdx(Dataset):
    """MNIST from its IDX files, one (image, label) at a time like torchvision.datasets.MNIST."""

    def __init__(self, folder: Path, train: bool = True):
        img_name, lbl_name = IDX_FILES["train" if train else "test"]
        self.data = torch.from_numpy(read_idx(Path(folder) / img_name).copy())      # [N, 28, 28] uint8
        self.targets = torch.from_numpy(read_idx(Path(folder) / lbl_name).astype(np.int64))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        img, target = self.data[index], int(self.targets[index])
        if Image is not None:
            img = Image.fromarray(img.numpy())   # torchvision does this so transforms see a PIL image
        else:
            img = img.numpy()
        return to_tensor(img), target


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    """Reconstruction + KL divergence, summed over all elements and the batch."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def make_loaders(folder: Path, batch_size: int = 128):
    kwargs = {}   # the example passes num_workers=1, pin_memory=True only with CUDA
    train_loader = DataLoader(MNISTIdx(folder, train=True), batch_size=batch_size, shuffle=True, **kwargs)
    test_loader = DataLoader(MNISTIdx(folder, train=False), batch_size=batch_size, shuffle=False, **kwargs)
    return train_loader, test_loader


def train(model, optimizer, train_loader, device) -> float:
    """One epoch; returns the mean loss per image."""
    model.train()
    train_loss = 0
    for batch_idx, (data, _) in enumerate(train_loader):
        data = data.to(device)
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = loss_function(recon_batch, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
    return train_loss / len(train_loader.dataset)


def test(model, test_loader, device) -> float:
    """The mean loss per image on the test set (one posterior sample per image, as in the example)."""
    model.eval()
    test_loss = 0
    with torch.no_grad():
        for data, _ in test_loader:
            data = data.to(device)
            recon_batch, mu, logvar = model(data)
            test_loss += loss_function(recon_batch, data, mu, logvar).item()
    return test_loss / len(test_loader.dataset)


def run(epochs: int = 10, batch_size: int = 128, seed: int = 1, folder=None, device: str = "cpu",
        on_epoch=None, max_train: int = 0, clock=time.perf_counter) -> list[dict]:
    """The example's main loop; returns one record per epoch with the train and test seconds.

    max_train > 0 trains on the first max_train images only (quick checks, not the example).
    """
    torch.manual_seed(seed)
    device = torch.device(device)
    train_loader, test_loader = make_loaders(Path(folder) if folder else data_dir("mnist"), batch_size)
    if max_train:
        subset = torch.utils.data.Subset(train_loader.dataset, range(min(max_train, len(train_loader.dataset))))
        train_loader = DataLoader(subset, batch_size=batch_size, shuffle=True)
    model = VAE().to(device)
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for epoch in range(1, epochs + 1):
        t0 = clock()
        train_loss = train(model, optimizer, train_loader, device)
        t1 = clock()
        test_loss = test(model, test_loader, device)
        t2 = clock()
        rec = {"epoch": epoch, "train_loss": train_loss, "test_loss": test_loss,
               "train_seconds": t1 - t0, "test_seconds": t2 - t1, "seconds": t2 - t0}
        history.append(rec)
        if on_epoch:
            on_epoch(rec)
    return history


def main():
    p = argparse.ArgumentParser(description="PyTorch's VAE example on MNIST (the benchmark's reference)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    run(args.epochs, args.batch_size, args.seed, on_epoch=lambda r: print(
        f"epoch {r['epoch']}: train loss {r['train_loss']:.4f}, test loss {r['test_loss']:.4f}, "
        f"{r['train_seconds']:.2f} s train + {r['test_seconds']:.2f} s test"))


if __name__ == "__main__":
    main()
