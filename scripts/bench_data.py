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

``--jpeg N`` times, instead, decoding N photo-sized JPEGs (500x375, ILSVRC's typical size)
to 256x256 as the image-file datasets do, in one thread: PIL with and without
``jpeg_draft`` (a DataLoader of W workers delivers about W times that rate) and
torchvision's decoder on the CPU; with ``--decode gpu``, also batched nvJPEG on CUDA.

    python scripts/bench_data.py                  # on CUDA when available, else CPU
    python scripts/bench_data.py --device cpu --images 20000 --workers 0 2
    python scripts/bench_data.py --jpeg 200 --rounds 3
    python scripts/bench_data.py --jpeg 2000 --rounds 3 --decode gpu --batch 256
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from rcnnexp.config.dataset import DatasetConfig
from rcnnexp.data.tensor import TensorDataModule

CPU = torch.device("cpu")
MEAN = (0.4914, 0.4822, 0.4465)  # only the shapes of the work matter: any mean/std will do
STD = (0.2470, 0.2435, 0.2616)


class RandomCIFAR(TensorDataModule):
    """Random uint8 images in CIFAR's shape, as a TensorDataModule (the fast path)."""

    channels = 3
    num_classes = 10
    stored_size = (32, 32)

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self._images, self._labels = images, labels
        schema = DatasetConfig()  # the other transform keys at their defaults
        super().__init__(root="unused", download=False, normalize="channel", padding=4,
                         flip=True, crop=schema.crop, views=schema.views,
                         view_stride=schema.view_stride, scale=schema.scale,
                         train_crops=schema.train_crops)

    def missing(self) -> None:
        return None  # made in memory: nothing is read from disk

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


def photo_jpegs(n: int, folder: Path) -> list[str]:
    """N photo-sized JPEGs (500x375, ILSVRC's typical size) of smooth random content."""
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, (47, 63, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        path = folder / f"{i}.jpg"
        path.write_bytes(buf.getvalue())
        paths.append(str(path))
    return paths


def time_jpeg(n: int, rounds: int, batch: int, gpu: bool) -> None:
    """Decode (and decode + resize to 256x256) in one process and one thread: with PIL as a
    DataLoader worker does (with and without draft), and with torchvision.io.decode_jpeg
    in batches as the main process does for a CPU device; with ``gpu``, batched nvJPEG on
    CUDA from bytes already read (what the workers hand over), per GPU."""
    import tempfile

    from PIL import Image

    from rcnnexp.data.decode import _decode_jpegs, decode_batch, read_payload
    from rcnnexp.data.folder import ImageFiles

    torch.set_num_threads(1)
    size = (256, 256)
    with tempfile.TemporaryDirectory() as tmp:
        paths = photo_jpegs(n, Path(tmp))
        files = {draft: ImageFiles(paths, [0] * n, size, draft) for draft in (False, True)}
        payloads = [read_payload(p, size) for p in paths]
        assert all(p.dim() == 1 for p in payloads)
        chunks = [payloads[i:i + batch] for i in range(0, n, batch)]

        def pil_decode() -> None:
            for p in paths:
                with Image.open(p) as img:
                    img.convert("RGB")

        def pil(draft: bool) -> None:
            for i in range(n):
                files[draft][i]

        def decode_only(device: torch.device) -> None:
            for chunk in chunks:
                _decode_jpegs(chunk, device)
            sync(device)

        def decode_resize(device: torch.device) -> None:
            for chunk in chunks:
                decode_batch(chunk, size, device)
            sync(device)

        variants = {"PIL decode": pil_decode,
                    "PIL decode + resize (dataset.decode=pil jpeg_draft=false)":
                        lambda: pil(False),
                    "PIL draft decode + resize (dataset.decode=pil jpeg_draft=true)":
                        lambda: pil(True),
                    "torchvision decode_jpeg, CPU": lambda: decode_only(CPU),
                    "torchvision decode_jpeg + resize, CPU (dataset.decode=torchvision)":
                        lambda: decode_resize(CPU)}
        if gpu:
            cuda = torch.device("cuda")
            name = torch.cuda.get_device_name()
            variants[f"nvJPEG decode, {name}"] = lambda: decode_only(cuda)
            variants[f"nvJPEG decode + resize, {name} (dataset.decode=torchvision)"] = \
                lambda: decode_resize(cuda)
        for run in variants.values():  # warm-up: libraries loaded, nvJPEG's buffers made
            run()
        rates: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(rounds):
            for key, run in variants.items():
                start = time.perf_counter()
                run()
                rates[key].append(n / (time.perf_counter() - start))
    print(f"JPEG 500x375 -> 256x256, {n} images (batches of {batch} for torchvision), median "
          f"of {rounds} rounds, one thread:")
    for key, r in rates.items():
        print(f"  {key}: {statistics.median(r):,.0f} img/s")


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
                        help="time decoding N JPEGs as the image-file datasets do, instead")
    parser.add_argument("--decode", choices=["cpu", "gpu"], default="cpu",
                        help="--jpeg: gpu also times torchvision's nvJPEG decoder on CUDA")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads of this process (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.jpeg:
        time_jpeg(args.jpeg, args.rounds, args.batch, args.decode == "gpu")
        return

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


if __name__ == "__main__":
    main()
