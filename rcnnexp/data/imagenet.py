"""ILSVRC-2012 (ImageNet-1k): 1.28 M training images; its 50,000 validation images are the
test split (as in the C-RNN paper).

``<root>/imagenet/`` holds either the class-folder trees ``train/<wnid>/*.JPEG`` and
``val/<wnid>/*.JPEG``, or the official archives ``ILSVRC2012_img_train.tar``,
``ILSVRC2012_img_val.tar`` and ``ILSVRC2012_devkit_t12.tar.gz``, which torchvision's ImageNet
code checks (MD5) and extracts into those trees on first use (hours for train: run
``scripts/prepare_data.py imagenet`` ahead of training). The archives need an account at
image-net.org: they are never downloaded automatically. Labels are the sorted WordNet IDs of
``train/`` (torchvision's order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rcnnexp.data.files import describe_missing, one_line
from rcnnexp.data.folder import FolderDataModule, list_class_folders, list_images
from rcnnexp.errors import DataError

ARCHIVES = {"train": "ILSVRC2012_img_train.tar", "val": "ILSVRC2012_img_val.tar",
            "devkit": "ILSVRC2012_devkit_t12.tar.gz"}
SOURCE = ("https://image-net.org/challenges/LSVRC/2012/2012-downloads.php (an account is "
          "needed)")


class ImageNet(FolderDataModule):
    name = "imagenet"
    title = "ILSVRC-2012"

    def __init__(self, *, num_classes: int, **kwargs: Any) -> None:
        self.num_classes = num_classes
        super().__init__(**kwargs)

    @property
    def folder(self) -> Path:
        return Path(self.root) / "imagenet"

    def unextracted(self) -> tuple[list[str], list[str]]:
        """The class-folder trees (train, val) not there yet, and the archives missing to
        extract them from (the devkit's too, which labels val/)."""
        from torchvision.datasets import imagenet as tv

        d = self.folder
        todo = [s for s in ("train", "val") if not (d / s).is_dir()]
        needed = [ARCHIVES[s] for s in todo]
        if todo and not (d / tv.META_FILE).is_file():
            needed.append(ARCHIVES["devkit"])
        return todo, [a for a in needed if not (d / a).is_file()]

    def missing(self) -> str | None:
        todo, missing = self.unextracted()
        if not missing:  # the trees, or the archives to extract them from on first use
            return None
        return (f"{self.folder} (no {' or '.join(f'{s}/' for s in todo)} class folders, and "
                f"{describe_missing(missing)} to extract them from; never downloaded)")

    def extract(self) -> None:
        """Extract the official archives into train/ and val/ where those are missing."""
        from torchvision.datasets import imagenet as tv

        d = self.folder
        todo, missing = self.unextracted()
        if not todo:
            return
        if missing:
            raise DataError(
                f"{self.title} not found in {d} (under dataset.root): no "
                f"{' or '.join(f'{s}/' for s in todo)} class-folder tree (<wnid>/*.JPEG) and "
                f"{describe_missing(missing)} to extract it from. Download the archives from "
                f"{SOURCE} into {d} (they cannot be downloaded automatically), or point "
                "dataset.root at a folder whose imagenet/ holds train/ and val/ class folders")
        try:
            if not (d / tv.META_FILE).is_file():
                tv.parse_devkit_archive(str(d))
            if "train" in todo:
                tv.parse_train_archive(str(d))
            if "val" in todo:
                tv.parse_val_archive(str(d))
        except Exception as err:
            raise DataError(f"{self.title}: extracting the archives in {d} failed "
                            f"({type(err).__name__}: {one_line(err)}); replace any damaged "
                            f"archive (from {SOURCE}) and remove partly extracted train/ or "
                            "val/ folders") from None

    def find_samples(self) -> dict[str, list[tuple[str, int]]]:
        d = self.folder
        self.extract()
        classes = list_class_folders(d / "train")
        if not classes:
            raise DataError(f"{self.title}: {d / 'train'} has no class folders "
                            "(expected train/<wnid>/*.JPEG)")
        if len(classes) > self.num_classes:
            raise DataError(f"{self.title}: {d / 'train'} has {len(classes)} class folders, "
                            f"more than dataset.num_classes={self.num_classes}")
        index = {c: i for i, c in enumerate(classes)}
        unknown = [c for c in list_class_folders(d / "val") if c not in index]
        if unknown:
            raise DataError(f"{self.title}: {d / 'val'} has class folders that train/ lacks "
                            f"({', '.join(unknown[:5])}); val/ must use train/'s WordNet IDs")
        out: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
        for split, sub in (("train", "train"), ("test", "val")):
            for c in classes:
                if (d / sub / c).is_dir():
                    out[split] += [(p, index[c]) for p in list_images(d / sub / c)]
        if not out["test"]:
            raise DataError(f"{self.title}: no images in {d / 'val'} (expected val/<wnid>/*."
                            "JPEG, as torchvision extracts ILSVRC2012_img_val.tar)")
        return out


__all__ = ["ImageNet"]
