#!/usr/bin/env python
"""Images per second of the GPU-resident data path against a torchvision DataLoader.

Both produce the same thing for CIFAR-shaped data (uint8 32x32x3): RecNet's training
augmentation (random 32x32 crop of the image zero-padded by 4, horizontal flip with
probability 1/2) and per-channel mean/std normalisation, as float32 batches on the device.

* fast: rcnnexp's TensorDataModule (one uint8 tensor on the device, crops/flips/normalise as
  whole-batch tensor operations);
* dataloader: a Dataset returning PIL images with torchvision's RandomCrop(32, padding=4),
  RandomHorizontalFlip, ToTensor, Normalize, batched by torch.utils.data.DataLoader
  (--workers worker processes, pinned memory on CUDA) and copied to the device.

The variants run interleaved in one process, ``--rounds`` times, so that a busy machine
slows them alike; the reported ratio is the median over rounds of fast / dataloader.

``--jpeg N`` also times one process decoding N photo-sized JPEGs (500x375, ILSVRC's typical
size) to 256x256 as the image-file datasets do, with and without ``jpeg_draft``: a
DataLoader of W workers delivers about W times that rate.

    python scripts/bench_data.py                  # on CUDA when available, else CPU
    python scripts/bench_data.py --device cpu --images 20000 --workers 0 2
    python scripts/bench_data.py --jpeg 200 --rounds 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from rcnnexp.data.tensor import TensorDataModule

MEAN = (0.4914, 0.4822, 0.4465)  # only the shapes of the work matter: any mean/std will do
STD = (0.2470, 0.2435, 0.2616)


class RandomCIFAR(TensorDataModule):
    """Random uint8 images in CIFAR's shape, as a TensorDataModule (the fast path)."""

    channels = 3
    num_classes = 10
    stored_size = (32, 32)

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self._images, self._labels = images, labels
        super().__init__("unused", False, normalize="channel", padding=4, flip=True)

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        x = torch.from_numpy(self._images).permute(0, 3, 1, 2).contiguous()
        return {"train": (x, torch.from_numpy(self._labels))}


class PILDataset(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        import torchvision.transforms as T

        self.images, self.labels = images, labels
        self.transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
                                    T.ToTensor(), T.Normalize(MEAN, STD)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fast(data: RandomCIFAR, batch: int, device: torch.device, seed: int) -> float:
    g = torch.Generator(device=device).manual_seed(seed)
    sync(device)
    start = time.perf_counter()
    n = 0
    for x, _ in data.train_batches(batch, g):
        n += len(x)
    sync(device)
    return n / (time.perf_counter() - start)


def time_loader(loader: torch.utils.data.DataLoader, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    n = 0
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        n += len(x)
    sync(device)
    return n / (time.perf_counter() - start)


def time_jpeg(n: int, rounds: int) -> None:
    import io
    import tempfile
    from pathlib import Path

    from PIL import Image

    from rcnnexp.data.folder import ImageFiles

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(n):
            small = rng.integers(0, 256, (47, 63, 3), dtype=np.uint8)  # smooth-ish content
            img = Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC)
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=90)
            path = Path(tmp) / f"{i}.jpg"
            path.write_bytes(buf.getvalue())
            paths.append(str(path))
        files = {draft: ImageFiles(paths, [0] * n, (256, 256), draft) for draft in (True, False)}
        rates: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(rounds):
            for draft, ds in files.items():
                start = time.perf_counter()
                for i in range(n):
                    ds[i]
                rates[draft].append(n / (time.perf_counter() - start))
        for draft in (True, False):
            print(f"JPEG 500x375 -> 256x256 in one process, jpeg_draft={draft}: "
                  f"{statistics.median(rates[draft]):,.0f} img/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--loader-images", type=int, default=5000,
                        help="images per DataLoader pass (it is slow; the rate is what counts)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--jpeg", type=int, default=0, metavar="N",
                        help="also time decoding N JPEGs as the image-file datasets do")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads of this process (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, args.images).astype(np.int64)
    fast = RandomCIFAR(images, labels)
    fast.setup(device)
    subset = min(args.loader_images, args.images)
    dataset = PILDataset(images[:subset], labels[:subset])
    loaders = {w: torch.utils.data.DataLoader(
        dataset, batch_size=args.batch, shuffle=True, drop_last=True, num_workers=w,
        pin_memory=device.type == "cuda", persistent_workers=w > 0) for w in args.workers}

    time_fast(fast, args.batch, device, 0)  # warm-up
    for loader in loaders.values():
        next(iter(loader))
    rates: dict[str, list[float]] = {"fast": []} | {f"workers={w}": [] for w in loaders}
    for r in range(args.rounds):
        rates["fast"].append(time_fast(fast, args.batch, device, r + 1))
        for w, loader in loaders.items():
            rates[f"workers={w}"].append(time_loader(loader, device))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f} img/s" for k, v in rates.items()),
              flush=True)
    print(f"\ndevice {device}, torch threads {torch.get_num_threads()}, batch {args.batch}, "
          f"{args.images} images (DataLoader passes of {subset})")
    for w in loaders:
        ratios = [f / d for f, d in zip(rates["fast"], rates[f"workers={w}"], strict=True)]
        print(f"fast path {statistics.median(rates['fast']):,.0f} img/s vs DataLoader "
              f"(workers={w}) {statistics.median(rates[f'workers={w}']):,.0f} img/s: "
              f"median ratio {statistics.median(ratios):.1f}x "
              f"(rounds: {', '.join(f'{x:.1f}' for x in ratios)})")
    if args.jpeg:
        time_jpeg(args.jpeg, args.rounds)


if __name__ == "__main__":
    main()
