"""The scene datasets of the C-RNN paper, each with its official train/test lists.

SUN397 (397 classes, 108,754 images): ``<root>/SUN397/`` as ``SUN397.tar.gz`` extracts
(``a/abbey/sun_*.jpg``, ``ClassName.txt``), and the ten official partitions of
``Partitions.zip`` (``Training_01.txt`` .. ``Testing_10.txt``, 50 + 50 images per class) in
``<root>/SUN397/Partitions/``. ``partition`` (1..10) chooses one.

MIT Indoor 67 (67 classes): ``<root>/mit_indoor/Images/<class>/*.jpg`` as
``indoorCVPR_09.tar`` extracts, with the official ``TrainImages.txt`` and ``TestImages.txt``
(5,360 / 1,340 images, about 80 / 20 per class) beside ``Images/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from rcnnexp.data.files import absent, ensure_files, fetch_note, one_line, reading
from rcnnexp.data.folder import FolderDataModule, check_listed
from rcnnexp.errors import DataError


def read_list(path: Path) -> list[str]:
    with path.open(encoding="utf-8", errors="strict") as f:
        return [line.strip() for line in f if line.strip()]


class SUN397(FolderDataModule):
    num_classes = 397
    name = "sun397"
    title = "SUN397"
    PARTITIONS_URL = "https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip"

    def __init__(self, *, partition: int, **kwargs: Any) -> None:
        self.partition = partition
        super().__init__(**kwargs)

    @property
    def folder(self) -> Path:
        return Path(self.root) / "SUN397"

    def partition_dir(self) -> Path | None:
        d = self.folder
        name = f"Training_{self.partition:02d}.txt"
        for cand in (d / "Partitions", d / "Partitions" / "Partitions", d.parent / "Partitions",
                     d):
            if (cand / name).is_file():
                return cand
        return None

    def partition_files(self) -> list[str]:
        """The partition's official lists: its training images, then its test images."""
        return [f"Training_{self.partition:02d}.txt", f"Testing_{self.partition:02d}.txt"]

    def missing(self) -> str | None:
        images = absent(self.folder, ["ClassName.txt"], self.download)
        if images is not None or self.partition_dir() is not None:
            return images
        return absent(self.folder / "Partitions", self.partition_files(), self.download)

    def find_samples(self) -> dict[str, list[tuple[str, int]]]:
        from torchvision.datasets import SUN397 as TV
        from torchvision.datasets.utils import download_and_extract_archive

        d = self.folder
        images_src = f"{TV._DATASET_URL} (extract it in dataset.root)"
        ensure_files(self.title, d, ["ClassName.txt"], self.download,
                     lambda: download_and_extract_archive(TV._DATASET_URL, self.root,
                                                          md5=TV._DATASET_MD5), images_src)
        train_name, test_name = self.partition_files()
        if self.partition_dir() is None:
            ensure_files(self.title, d / "Partitions", [train_name, test_name], self.download,
                         lambda: download_and_extract_archive(self.PARTITIONS_URL,
                                                              str(d / "Partitions")),
                         f"{self.PARTITIONS_URL} (extract it in {d / 'Partitions'})")
        parts = self.partition_dir()
        assert parts is not None
        src = f"{self.PARTITIONS_URL} and {images_src}"
        with reading(self.title, parts, src):
            classes = read_list(d / "ClassName.txt")  # "/a/abbey", in label order
            lists = {"train": read_list(parts / train_name),
                     "test": read_list(parts / test_name)}
        if len(classes) != self.num_classes:
            raise DataError(f"{self.title}: {d / 'ClassName.txt'} names {len(classes)} classes, "
                            f"not {self.num_classes}; it is not SUN397's class list")
        index = {c.rstrip("/"): i for i, c in enumerate(classes)}
        out: dict[str, list[tuple[str, int]]] = {}
        for split, names in lists.items():
            samples = []
            for name in names:  # "/a/abbey/sun_aaalbzqrimafwbiv.jpg"
                cls = name.rsplit("/", 1)[0]
                if cls not in index:
                    raise DataError(f"{self.title}: {name!r} in the {split} list of partition "
                                    f"{self.partition} is in no class of ClassName.txt")
                samples.append((os.path.join(d, name.lstrip("/")), index[cls]))
            listing = train_name if split == "train" else test_name
            check_listed(self.title, d, [p for p, _ in samples], listing)
            out[split] = samples
        return out


class MITIndoor(FolderDataModule):
    num_classes = 67
    name = "mitindoor"
    title = "MIT Indoor 67"
    IMAGES_URL = "http://groups.csail.mit.edu/vision/LabelMe/NewImages/indoorCVPR_09.tar"
    LIST_URLS: ClassVar[dict[str, str]] = {
        "TrainImages.txt": "http://web.mit.edu/torralba/www/TrainImages.txt",
        "TestImages.txt": "http://web.mit.edu/torralba/www/TestImages.txt"}

    @property
    def folder(self) -> Path:
        return Path(self.root) / "mit_indoor"

    def images_dir(self) -> Path | None:
        for cand in (self.folder / "Images", self.folder / "indoorCVPR_09" / "Images"):
            if cand.is_dir():
                return cand
        return None

    def missing(self) -> str | None:
        lists = absent(self.folder, list(self.LIST_URLS), self.download)
        if lists is not None or self.images_dir() is not None:
            return lists
        return f"{self.folder} (no Images/ folder{fetch_note(self.download)})"

    def find_samples(self) -> dict[str, list[tuple[str, int]]]:
        from torchvision.datasets.utils import download_and_extract_archive, download_url

        d = self.folder

        def fetch_lists() -> None:
            for name, url in self.LIST_URLS.items():
                if not (d / name).is_file():
                    download_url(url, str(d), name)

        ensure_files(self.title, d, list(self.LIST_URLS), self.download, fetch_lists,
                     " and ".join(self.LIST_URLS.values()))
        if self.images_dir() is None:
            if not self.download:
                raise DataError(
                    f"{self.title} not found: no Images/ folder in {d} (under dataset.root); "
                    f"set dataset.download=true to fetch it, or get {self.IMAGES_URL} and "
                    f"extract it in {d} (Images/<class>/*.jpg)")
            try:
                download_and_extract_archive(self.IMAGES_URL, str(d))
            except Exception as err:
                raise DataError(f"{self.title}: no Images/ folder in {d}, and downloading "
                                f"{self.IMAGES_URL} failed ({type(err).__name__}: "
                                f"{one_line(err)}); get it by hand and extract it in {d}"
                                ) from None
            if self.images_dir() is None:
                raise DataError(f"{self.title}: {self.IMAGES_URL} did not extract to "
                                f"{d / 'Images'}")
        images = self.images_dir()
        assert images is not None
        with reading(self.title, d, " and ".join(self.LIST_URLS.values())):
            lists = {"train": read_list(d / "TrainImages.txt"),
                     "test": read_list(d / "TestImages.txt")}
        classes = sorted({name.split("/", 1)[0] for name in lists["train"]})
        if len(classes) > self.num_classes:
            raise DataError(f"{self.title}: {d / 'TrainImages.txt'} names {len(classes)} "
                            f"classes, more than {self.num_classes}")
        index = {c: i for i, c in enumerate(classes)}
        out: dict[str, list[tuple[str, int]]] = {}
        for split, names in lists.items():
            samples = []
            for name in names:  # "kitchen/int474.jpg"
                cls = name.split("/", 1)[0]
                if cls not in index:
                    raise DataError(f"{self.title}: {name!r} in the {split} list is in a "
                                    "class that TrainImages.txt never names")
                samples.append((str(images / name), index[cls]))
            listing = "TrainImages.txt" if split == "train" else "TestImages.txt"
            check_listed(self.title, images, [p for p, _ in samples], listing)
            out[split] = samples
        return out


__all__ = ["SUN397", "MITIndoor"]
