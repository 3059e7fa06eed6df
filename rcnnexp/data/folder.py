"""Large image datasets read from JPEG files: DataLoader workers decode, the device does the rest.

Workers only decode and resize (``resize`` x ``resize``, Caffe's warp, deterministic): they
draw no random numbers. Batches come back as uint8 in pinned memory and are copied to the
device without blocking; there the random crops, flips and normalisation of
:class:`rcnnexp.data.transforms.BatchPipeline` run on the whole batch, drawn from the epoch's
generator, as is the shuffling order. An epoch is therefore a function of (seed, epoch)
whatever ``trainer.workers`` is, and a resumed run replays it exactly.

One worker pool serves every split (its batches are set before each pass) and lives as long
as the data module (``persistent_workers``).
"""

from __future__ import annotations

import errno
import logging
import os
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from rcnnexp.data.base import Batch, DataModule, DataSpec
from rcnnexp.data.files import unreadable
from rcnnexp.data.transforms import BatchPipeline, Stats, cached_stats, compute_stats, stats_key
from rcnnexp.errors import DataError

log = logging.getLogger("rcnnexp")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
                    ".gif")
STATS_BATCH = 128


def load_image(path: str, size: tuple[int, int], draft: bool) -> torch.Tensor:
    """An image file as uint8 RGB ``[3, H, W]``, resized to ``size`` (H, W) (bilinear).

    With ``draft``, a JPEG is decoded at the smallest 1/2, 1/4 or 1/8 scale that is still at
    least ``size`` (libjpeg's DCT scaling), which is several times faster for large photos.
    """
    from PIL import Image

    h, w = size
    with Image.open(path) as img:
        if draft and img.format == "JPEG":
            img.draft("RGB", (w, h))
        rgb = img.convert("RGB")
    if rgb.size != (w, h):
        rgb = rgb.resize((w, h), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)


class ImageFiles(Dataset):
    """(uint8 image, label, error message) per index; a file that fails to decode gives a
    black image and its error, which the main process raises as a :class:`DataError`."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int], size: tuple[int, int],
                 draft: bool) -> None:
        # fixed-width bytes, not a list of str: no per-item reference counts for the
        # forked workers to copy
        self.paths = np.array([os.fsencode(p) for p in paths])
        self.labels = np.asarray(labels, dtype=np.int64)
        self.size = size
        self.draft = draft

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        path = os.fsdecode(self.paths[i])
        try:
            return load_image(path, self.size, self.draft), int(self.labels[i]), ""
        except PermissionError:
            msg = (f"cannot read image {path} (permission denied); make the dataset's files "
                   "readable by this user (chmod)")
        except Exception as err:
            msg = (f"cannot decode image {path} ({type(err).__name__}: {err}); the file is "
                   "damaged: replace it (or re-extract the dataset)")
        return torch.zeros(3, *self.size, dtype=torch.uint8), int(self.labels[i]), msg


class _Schedule:
    """The batch sampler of the worker pool: a list of index batches, set before each pass."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class FolderDataModule(DataModule):
    """Subclasses set ``num_classes``, ``name``, ``title`` and implement :meth:`find_samples`."""

    num_classes: int
    name: str = "images"
    title: str = "images"

    def __init__(self, *, root: str, download: bool, resize: int, jpeg_draft: bool,
                 stats_images: int | None, **transforms: Any) -> None:
        """``transforms``: the keyword arguments of :class:`BatchPipeline`, as the dataset's
        config gives them (conf/dataset/*.yaml: Caffe's for the image-folder datasets)."""
        self.root = root
        self.download = download
        self.resize = resize
        self.jpeg_draft = jpeg_draft
        self.stats_images = stats_images
        self.pipeline = BatchPipeline((resize, resize), **transforms)
        self.files: ImageFiles | None = None
        self.ranges: dict[str, tuple[int, int]] = {}  # split -> (first index, count)
        self.device = torch.device("cpu")
        self.workers = 0
        self.stats: Stats | None = None
        self._schedule = _Schedule()
        self._loader: DataLoader | None = None

    @property
    def spec(self) -> DataSpec:
        return DataSpec(in_channels=3, num_classes=self.num_classes,
                        image_size=self.pipeline.out_size)

    @property
    def folder(self) -> Path:
        """The dataset's own folder under ``root``; statistics are cached there."""
        return Path(self.root)

    @abstractmethod
    def find_samples(self) -> dict[str, list[tuple[str, int]]]:
        """(path, label) of every image of each split (fetching or extracting what is
        allowed first); raises :class:`DataError` naming what is missing."""

    # -- setup ----------------------------------------------------------------------------------
    def setup(self, device: torch.device, workers: int = 0, merge_validation: bool = False
              ) -> None:
        samples = self.find_samples()
        if merge_validation and "val" in samples:
            samples["train"] = samples["train"] + samples.pop("val")
        if not samples.get("train"):
            raise DataError(f"{self.title}: no training images found in {self.folder}")
        paths: list[str] = []
        labels: list[int] = []
        for split in ("train", "val", "test"):
            if split not in samples:
                continue
            self.ranges[split] = (len(labels), len(samples[split]))
            for path, label in samples[split]:
                if not 0 <= label < self.num_classes:
                    raise DataError(f"{self.title}: {path} has label {label}, outside "
                                    f"0..{self.num_classes - 1}")
                paths.append(path)
                labels.append(label)
        self.splits = tuple(s for s in ("train", "val", "test") if s in self.ranges)
        self.files = ImageFiles(paths, labels, (self.resize, self.resize), self.jpeg_draft)
        self._loader = None  # a worker pool is made for these files on first use
        self.device = device
        self.workers = workers
        if self.pipeline.needs_stats:
            start, n = self.ranges["train"]
            chosen = torch.arange(start, start + n)
            if self.stats_images is not None and self.stats_images < n:
                pick = torch.randperm(n, generator=torch.Generator().manual_seed(0))
                chosen = chosen[pick[:self.stats_images].sort().values]
            key = stats_key(type(self).__name__, self.resize, self.jpeg_draft,
                            "\n".join(paths[i] for i in chosen.tolist()))

            def compute() -> Stats:
                log.info("%s: computing the training-set mean over %d images (once; cached "
                         "in %s)", self.title, len(chosen), self.folder)
                ids = chosen.tolist()
                batches = [ids[i:i + STATS_BATCH] for i in range(0, len(ids), STATS_BATCH)]
                return compute_stats(x for x, _ in self._run(batches))

            self.stats = cached_stats(self.folder, self.name, key, compute)
        self.pipeline.set_stats(self.stats, device)

    def num_examples(self, split: str) -> int:
        return self.ranges[split][1]

    # -- batches --------------------------------------------------------------------------------
    def _run(self, batches: list[list[int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Decode these batches of indices in the worker pool: uint8 images and labels on
        the device."""
        assert self.files is not None, "setup() first"
        if self._loader is None:
            workers = self.workers
            self._loader = DataLoader(
                self.files, batch_sampler=self._schedule, num_workers=workers,
                pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
                prefetch_factor=4 if workers > 0 else None)
        self._schedule.batches = batches
        for images, labels, errors in self._loader:
            bad = [e for e in errors if e]
            if bad:
                raise DataError(f"{self.title}: {bad[0]}")
            yield (images.to(self.device, non_blocking=True),
                   labels.to(self.device, non_blocking=True))

    def train_batches(self, batch_size: int, generator: torch.Generator, rank: int = 0,
                      world_size: int = 1, augment: torch.Generator | None = None
                      ) -> Iterator[Batch]:
        start, n = self.ranges["train"]
        order = torch.randperm(n, generator=generator, device=generator.device)
        order = (order.cpu()[rank::world_size] + start).tolist()
        count = self.num_train_batches(batch_size, world_size)
        batches = [order[b * batch_size:(b + 1) * batch_size] for b in range(count)]
        for images, labels in self._run(batches):
            yield self.pipeline.train(images, augment or generator), labels

    def eval_batches(self, split: str, batch_size: int, rank: int = 0,
                     world_size: int = 1) -> Iterator[Batch]:
        """``batch_size`` views per batch (at least one image): ``[B, V, C, h, w]``."""
        start, n = self.ranges[split]
        ids = list(range(start + rank, start + n, world_size))
        per_batch = max(1, batch_size // self.pipeline.num_views)
        batches = [ids[i:i + per_batch] for i in range(0, len(ids), per_batch)]
        for images, labels in self._run(batches):
            yield self.pipeline.eval(images), labels


def list_class_folders(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def list_images(folder: Path) -> list[str]:
    """Image files directly in ``folder`` (by extension, any case), sorted by name."""
    return sorted(e.path for e in os.scandir(folder)
                  if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))


def check_listed(title: str, where: Path, paths: Sequence[str], listing: str) -> None:
    """Every image a split list names must exist, in folders this user may read."""
    missing = [p for p in paths if not os.path.isfile(p)]
    folders = sorted({os.path.dirname(p) for p in missing} | {str(where)})
    locked = [f for f in folders if os.path.isdir(f) and not os.access(f, os.R_OK | os.X_OK)]
    if locked:
        raise DataError(unreadable(title, PermissionError(errno.EACCES, "Permission denied",
                                                          locked[0])))
    if missing:
        shown = ", ".join(missing[:3])
        raise DataError(f"{title}: {len(missing)} of the {len(paths)} images that {listing} "
                        f"names are missing under {where} (e.g. {shown}); the image archive "
                        "is incomplete or extracted elsewhere")
