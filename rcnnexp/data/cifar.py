"""CIFAR-10 and CIFAR-100 (the python version), read through torchvision.

Files: ``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch}`` and
``<root>/cifar-100-python/{train, test}``, as torchvision downloads and extracts them.
Validation (``val_split``): ``none``; ``fraction`` (a class-stratified ``val_fraction`` of
the training images, fixed by ``split_seed``); ``rcnn`` (the RCNN protocol: the last
``val_size`` = 10,000 training images, i.e. CIFAR-10's ``data_batch_5``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torchvision

from rcnnexp.data.files import absent, ensure_files, reading
from rcnnexp.data.tensor import TensorDataModule, stratified_split
from rcnnexp.errors import DataError


class CIFAR10(TensorDataModule):
    channels = 3
    num_classes = 10
    stored_size = (32, 32)
    name = "cifar10"
    title = "CIFAR-10"
    torchvision_class: type = torchvision.datasets.CIFAR10

    def __init__(self, *, root: str, download: bool, val_split: str, val_fraction: float,
                 val_size: int, split_seed: int, **transforms: Any) -> None:
        self.val_split = val_split
        self.val_fraction = val_fraction
        self.val_size = val_size
        self.split_seed = split_seed
        super().__init__(root=root, download=download, **transforms)

    @property
    def folder(self) -> Path:
        return Path(self.root) / self.torchvision_class.base_folder

    @property
    def source(self) -> str:
        tv = self.torchvision_class
        return f"{tv.filename} from {tv.url} (extract it in dataset.root)"

    @property
    def files(self) -> list[str]:
        """The files it reads in :attr:`folder` (torchvision's lists of them)."""
        tv = self.torchvision_class
        return [f for f, _ in tv.train_list + tv.test_list]

    def missing(self) -> str | None:
        return absent(self.folder, self.files, self.download)

    def cache_dir(self) -> Path | None:
        return self.folder

    def split_description(self) -> str:
        return f"{self.val_split}:{self.val_fraction}:{self.val_size}:{self.split_seed}"

    def fetch(self) -> None:
        tv = self.torchvision_class
        torchvision.datasets.utils.download_and_extract_archive(
            tv.url, self.root, filename=tv.filename, md5=tv.tgz_md5)

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        tv = self.torchvision_class
        ensure_files(self.title, self.folder, self.files, self.download, self.fetch,
                     self.source)
        loaded = {}
        with reading(self.title, self.folder, self.source):
            for split, train in (("train", True), ("test", False)):
                # torchvision checks every file against the official MD5 before reading it
                ds = tv(self.root, train=train, download=False)
                images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
                loaded[split] = (images, torch.as_tensor(ds.targets, dtype=torch.long))
        images, labels = loaded["train"]
        out = {"test": loaded["test"]}
        if self.val_split == "rcnn":
            if self.val_size >= len(labels):
                raise DataError(f"{self.title}: dataset.val_size={self.val_size} leaves no "
                                f"training images of the {len(labels)} in {self.folder}")
            n = len(labels) - self.val_size
            out["train"] = (images[:n], labels[:n])
            out["val"] = (images[n:], labels[n:])
        elif self.val_split == "fraction":
            val, train = stratified_split(labels, (self.val_fraction,), self.split_seed)
            out["train"] = (images[train], labels[train])
            out["val"] = (images[val], labels[val])
        else:
            out["train"] = (images, labels)
        return out


class CIFAR100(CIFAR10):
    num_classes = 100
    name = "cifar100"
    title = "CIFAR-100"
    torchvision_class = torchvision.datasets.CIFAR100


__all__ = ["CIFAR10", "CIFAR100"]
