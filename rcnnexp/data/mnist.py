"""MNIST (60,000 + 10,000 grey 28x28 digits), read through torchvision.

Files: ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (uncompressed IDX),
as torchvision downloads them. Validation (``val_split``): ``none``, or ``fraction`` (a
class-stratified ``val_fraction`` of the training images, fixed by ``split_seed``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torchvision

from rcnnexp.data.files import absent, ensure_files, reading
from rcnnexp.data.tensor import TensorDataModule, stratified_split

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")


class MNIST(TensorDataModule):
    channels = 1
    num_classes = 10
    stored_size = (28, 28)
    name = "mnist"
    title = "MNIST"

    def __init__(self, *, root: str, download: bool, val_split: str, val_fraction: float,
                 split_seed: int, **transforms: Any) -> None:
        self.val_split = val_split
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        super().__init__(root=root, download=download, **transforms)

    @property
    def folder(self) -> Path:
        return Path(self.root) / "MNIST" / "raw"

    @property
    def source(self) -> str:
        mirror = torchvision.datasets.MNIST.mirrors[0]
        return (f"the four IDX files (gzipped from {mirror}, then gunzip them) in "
                "<root>/MNIST/raw")

    def missing(self) -> str | None:
        return absent(self.folder, FILES, self.download)

    def cache_dir(self) -> Path | None:
        return self.folder.parent

    def split_description(self) -> str:
        return f"{self.val_split}:{self.val_fraction}:{self.split_seed}"

    def fetch(self) -> None:
        torchvision.datasets.MNIST(self.root, train=True, download=True)

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        ensure_files(self.title, self.folder, FILES, self.download, self.fetch, self.source)
        loaded = {}
        with reading(self.title, self.folder, self.source):
            for split, train in (("train", True), ("test", False)):
                ds = torchvision.datasets.MNIST(self.root, train=train, download=False)
                loaded[split] = (ds.data.unsqueeze(1).contiguous(), ds.targets.long())
        images, labels = loaded["train"]
        out = {"test": loaded["test"]}
        if self.val_split == "fraction":
            val, train = stratified_split(labels, (self.val_fraction,), self.split_seed)
            out["train"] = (images[train], labels[train])
            out["val"] = (images[val], labels[val])
        else:
            out["train"] = (images, labels)
        return out


__all__ = ["MNIST"]
