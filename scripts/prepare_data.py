#!/usr/bin/env python
"""Prepare datasets before training, so that the first run does not spend its time on it.

For each dataset named, with the same config (and overrides) that `rcnnexp train` uses:
download what can be downloaded (CIFAR-10/100, MNIST, SVHN, SUN397, MIT Indoor 67),
extract ILSVRC-2012's official archives into class folders (hours: do it once, here), check
that every image the official lists name is there, and compute the training split's mean
image / channel statistics and cache them beside the data.

With ``--cache``, the image-file datasets (imagenet, sun397, mitindoor) also decode every
image once into a cache beside the data (``rcnnexp-cache-NAME-SPLIT-RESIZE.npy``: uint8
N x resize x resize x 3, memory-mapped, with its labels and a description), which training
then reads instead of the files: no decoding at all (ILSVRC-2012 at 256: about 250 GB for
train, 10 GB for the test split). A cache that is up to date is kept; a stale one (other
files, labels, resize or jpeg_draft) is replaced.

    python scripts/prepare_data.py cifar10 svhn --root data
    python scripts/prepare_data.py imagenet --root /datasets --workers 16
    python scripts/prepare_data.py imagenet --root /datasets --workers 16 --cache
    python scripts/prepare_data.py cifar10 --set dataset.val_split=rcnn   # that split's mean
    python scripts/prepare_data.py all --no-download      # check what is there

What cannot be downloaded (ILSVRC-2012 needs an image-net.org account) is reported with
where to get it; the exit status is non-zero when any dataset is not ready.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from rcnnexp.cli import CONF_DIR, compose
from rcnnexp.config import register_configs, validate
from rcnnexp.data.folder import FolderDataModule
from rcnnexp.engine.build import build_data
from rcnnexp.errors import UserError

DATASETS = sorted(p.stem for p in (CONF_DIR / "dataset").glob("*.yaml"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", choices=[*DATASETS, "all"])
    parser.add_argument("--root", help="dataset.root (default: the config's, $RCNNEXP_DATA or "
                                       "data/)")
    parser.add_argument("--no-download", action="store_true", help="dataset.download=false")
    parser.add_argument("--workers", type=int, default=8,
                        help="decoding processes for the image datasets' mean (default 8)")
    parser.add_argument("--cache", action="store_true",
                        help="image-file datasets: decode every image once into a cache of "
                             "resized images beside the data, which training then reads "
                             "(the other datasets have nothing to cache)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override, as on the rcnnexp command line (repeatable)")
    args = parser.parse_args()
    names = DATASETS if "all" in args.datasets else args.datasets
    register_configs()
    failed = []
    for name in names:
        overrides = [f"dataset={name}", *args.set]
        if args.root:
            overrides.append(f"dataset.root={Path(args.root).resolve()}")
        if args.no_download:
            overrides.append("dataset.download=false")
        start = time.perf_counter()
        try:
            cfg = compose(overrides)
            validate(cfg)
            data = build_data(cfg.dataset)
            if args.cache and isinstance(data, FolderDataModule):
                data.write_cache(args.workers)  # first: setup refuses a stale cache
            data.setup(torch.device("cpu"), args.workers)
        except UserError as err:
            print(f"{name}: NOT READY: {err}", file=sys.stderr)
            failed.append(name)
            continue
        sizes = ", ".join(f"{s} {data.num_examples(s):,}" for s in data.splits)
        cached = "; cached" if isinstance(data, FolderDataModule) and data.cached else ""
        print(f"{name}: ready ({sizes}{cached}; {time.perf_counter() - start:.0f} s)")
    if failed:
        sys.exit(2)


if __name__ == "__main__":
    main()
