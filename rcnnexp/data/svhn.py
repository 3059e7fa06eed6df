"""SVHN, cropped digits (32x32 colour), read through torchvision.

Files: ``<root>/svhn/{train,test,extra}_32x32.mat`` (the official MATLAB files; torchvision
downloads them there). Splits (``val_split``):

* ``rcnn`` (the RCNN protocol, with ``extra=true``): validation = ``val_per_class_train``
  (400) random images of every class from train + ``val_per_class_extra`` (200) from extra;
  training = all the rest of train + extra (598,388 images); fixed by ``split_seed``;
* ``none``: train (with ``extra=true``, train + extra) for training, no validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from rcnnexp.data.files import absent, ensure_files, reading
from rcnnexp.data.tensor import TensorDataModule, per_class_split
from rcnnexp.errors import DataError


class SVHN(TensorDataModule):
    channels = 3
    num_classes = 10
    stored_size = (32, 32)
    name = "svhn"
    title = "SVHN"
    torchvision_class: type = torchvision.datasets.SVHN  # what reads (and checks) the files

    def __init__(self, *, root: str, download: bool, val_split: str, extra: bool,
                 val_per_class_train: int, val_per_class_extra: int, split_seed: int,
                 **transforms: Any) -> None:
        self.val_split = val_split
        self.extra = extra
        self.val_per_class_train = val_per_class_train
        self.val_per_class_extra = val_per_class_extra
        self.split_seed = split_seed
        super().__init__(root=root, download=download, **transforms)

    @property
    def folder(self) -> Path:
        return Path(self.root) / "svhn"

    def source(self, parts: tuple[str, ...]) -> str:
        urls = [self.torchvision_class.split_list[p][0] for p in parts]
        return f"{', '.join(urls)} (into <root>/svhn)"

    @property
    def parts(self) -> tuple[str, ...]:
        """The official files it reads: train and test, and extra where it trains on it."""
        return ("train", "test", "extra") if self.extra else ("train", "test")

    def files(self, parts: tuple[str, ...]) -> list[str]:
        return [self.torchvision_class.split_list[p][1] for p in parts]

    def missing(self) -> str | None:
        return absent(self.folder, self.files(self.parts), self.download)

    def cache_dir(self) -> Path | None:
        return self.folder

    def split_description(self) -> str:
        return (f"{self.val_split}:{self.extra}:{self.val_per_class_train}:"
                f"{self.val_per_class_extra}:{self.split_seed}")

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        parts = self.parts
        split_list = self.torchvision_class.split_list
        files = self.files(parts)

        def fetch() -> None:
            for p in parts:
                url, filename, md5 = split_list[p]
                if not (self.folder / filename).is_file():
                    torchvision.datasets.utils.download_url(url, str(self.folder), filename, md5)

        ensure_files(self.title, self.folder, files, self.download, fetch, self.source(parts))
        loaded = {}
        with reading(self.title, self.folder, self.source(parts)):
            for p in parts:
                # torchvision checks the file against the official MD5 before reading it
                ds = self.torchvision_class(str(self.folder), split=p, download=False)
                images = torch.from_numpy(np.ascontiguousarray(ds.data))
                loaded[p] = (images, torch.from_numpy(ds.labels).long())
        out = {"test": loaded["test"]}
        if self.val_split == "rcnn":
            if not self.extra:
                raise DataError("SVHN: dataset.val_split=rcnn draws validation images from "
                                "extra: set dataset.extra=true, or dataset.val_split=none")
            val_t, rest_t = per_class_split(
                loaded["train"][1], self.val_per_class_train, self.split_seed,
                f"SVHN {self.folder / 'train_32x32.mat'}", "dataset.val_per_class_train")
            val_e, rest_e = per_class_split(
                loaded["extra"][1], self.val_per_class_extra, self.split_seed + 1,
                f"SVHN {self.folder / 'extra_32x32.mat'}", "dataset.val_per_class_extra")
            (xt, yt), (xe, ye) = loaded["train"], loaded["extra"]
            out["val"] = (torch.cat([xt[val_t], xe[val_e]]), torch.cat([yt[val_t], ye[val_e]]))
            out["train"] = (torch.cat([xt[rest_t], xe[rest_e]]),
                            torch.cat([yt[rest_t], ye[rest_e]]))
        elif self.extra:
            out["train"] = (torch.cat([loaded["train"][0], loaded["extra"][0]]),
                            torch.cat([loaded["train"][1], loaded["extra"][1]]))
        else:
            out["train"] = loaded["train"]
        return out


__all__ = ["SVHN"]
