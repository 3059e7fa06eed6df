"""Large image datasets read from image files: DataLoader workers read them, the device does
the rest.

Decoding (``dataset.decode``, :mod:`rcnnexp.data.decode`): with ``pil`` the workers decode
and resize each image (``resize`` x ``resize``, Caffe's warp); with ``torchvision`` they
only read the files' bytes, and the main process decodes each batch on the training device
(nvJPEG on CUDA) and resizes it there. A cache of the resized images beside the data
(:meth:`FolderDataModule.write_cache`, ``scripts/prepare_data.py --cache``) replaces both:
an epoch is then a memory-mapped read.

Workers draw no random numbers. Batches come back as uint8 (in pinned memory for a CUDA
device) and are copied to the device without blocking; there the random crops, flips and
normalisation of :class:`rcnnexp.data.transforms.BatchPipeline` run on the whole batch,
drawn from the epoch's generator, as is the shuffling order. An epoch is therefore a
function of (seed, epoch) whatever ``trainer.workers``, the decoder or the cache, and a
resumed run replays it exactly.

One worker pool serves every split (its batches are set before each pass) and lives as long
as the data module (``persistent_workers``).
"""

from __future__ import annotations

import bisect
import errno
import json
import logging
import os
import shutil
import time
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from rcnnexp.data.base import Batch, DataModule, DataSpec
from rcnnexp.data.choices import Decode, choice
from rcnnexp.data.decode import (
    UndecodableImage,
    decode_batch,
    device_decoder_problem,
    load_image,
    read_payload,
)
from rcnnexp.data.files import unreadable
from rcnnexp.data.tensor import training_share
from rcnnexp.data.transforms import BatchPipeline, Stats, cached_stats, compute_stats, stats_key
from rcnnexp.errors import ConfigError, DataError

log = logging.getLogger("rcnnexp")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
                    ".gif")
STATS_BATCH = 128


def image_error(path: str, err: Exception) -> str:
    """Why an image file gave no image: unreadable (permissions) or damaged."""
    if isinstance(err, PermissionError):
        return (f"cannot read image {path} (permission denied); make the dataset's files "
                "readable by this user (chmod)")
    return (f"cannot decode image {path} ({type(err).__name__}: {err}); the file is "
            "damaged: replace it (or re-extract the dataset)")


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

    def path(self, i: int) -> str:
        return os.fsdecode(self.paths[i])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        path = self.path(i)
        try:
            return load_image(path, self.size, self.draft), int(self.labels[i]), ""
        except Exception as err:
            return (torch.zeros(3, *self.size, dtype=torch.uint8), int(self.labels[i]),
                    image_error(path, err))


class ImageBytes(ImageFiles):
    """(payload, label, error message) per index, the payload as :func:`read_payload` makes
    it: the file's bytes for the device to decode, or the image PIL decoded here."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:  # type: ignore[override]
        path = self.path(i)
        try:
            return read_payload(path, self.size), int(self.labels[i]), ""
        except Exception as err:
            return torch.zeros(3, *self.size, dtype=torch.uint8), int(self.labels[i]), \
                image_error(path, err)


Payloads = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def collate_payloads(samples: list[tuple[torch.Tensor, int, str]]
                     ) -> tuple[Payloads, torch.Tensor, list[str]]:
    """A batch of :class:`ImageBytes` items in three tensors, so that a worker hands over
    three shared-memory blocks per batch rather than one per image: the files' bytes end
    to end, each item's byte count (-1: decoded here), and the images decoded here."""
    payloads, labels, errors = zip(*samples, strict=True)
    raw = [p for p in payloads if p.dim() == 1]
    decoded = [p for p in payloads if p.dim() == 3]
    flat = torch.cat(raw) if raw else torch.empty(0, dtype=torch.uint8)
    lengths = torch.tensor([len(p) if p.dim() == 1 else -1 for p in payloads])
    images = torch.stack(decoded) if decoded else torch.empty(0, dtype=torch.uint8)
    return (flat, lengths, images), torch.tensor(labels, dtype=torch.int64), list(errors)


def split_payloads(batch: Payloads) -> list[torch.Tensor]:
    """:func:`collate_payloads`'s tensors back to one payload per item (views, no copy)."""
    flat, lengths, images = batch
    out = []
    offset = decoded = 0
    for n in lengths.tolist():
        if n < 0:
            out.append(images[decoded])
            decoded += 1
        else:
            out.append(flat[offset:offset + n])
            offset += n
    return out


class CachedImages(Dataset):
    """(uint8 image, label, "") per index, read from the cache's memory-mapped arrays (one
    per split, in the order of the indices). Each process maps the files itself."""

    def __init__(self, segments: Sequence[Path], labels: Sequence[int]) -> None:
        self.segments = [str(p) for p in segments]
        self.labels = np.asarray(labels, dtype=np.int64)
        counts = [int(np.load(p, mmap_mode="r").shape[0]) for p in self.segments]
        self.starts = np.cumsum([0, *counts[:-1]]).tolist()
        self._arrays: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self) -> dict[str, Any]:  # workers map the files anew
        return {**self.__dict__, "_arrays": None}

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        if self._arrays is None:
            self._arrays = [np.load(p, mmap_mode="r") for p in self.segments]
        k = bisect.bisect_right(self.starts, i) - 1
        image = torch.from_numpy(np.array(self._arrays[k][i - self.starts[k]]))
        return image.permute(2, 0, 1), int(self.labels[i]), ""


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

    def __init__(self, *, root: str, download: bool, resize: int, decode: str,
                 jpeg_draft: bool, stats_images: int | None, train_fraction: float = 1.0,
                 **transforms: Any) -> None:
        """``transforms``: the keyword arguments of :class:`BatchPipeline`, as the dataset's
        config gives them (conf/dataset/*.yaml: Caffe's for the image-folder datasets)."""
        self.root = root
        self.download = download
        self.resize = resize
        self.decode = choice(Decode, "dataset.decode", decode)
        self.jpeg_draft = jpeg_draft
        self.stats_images = stats_images
        self.train_fraction = train_fraction
        self.pipeline = BatchPipeline((resize, resize), **transforms)
        self.files: ImageFiles | CachedImages | None = None
        self.decoder = Decode.pil  # what setup chose for the files: pil or torchvision
        self.cached = False
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
        cache = self.open_cache(samples)
        if merge_validation and "val" in samples:
            samples["train"] = samples["train"] + samples.pop("val")
        if self.train_fraction < 1 and samples.get("train"):
            train = samples["train"]
            keep = training_share(torch.tensor([label for _, label in train]),
                                  self.train_fraction)
            samples["train"] = [train[i] for i in keep.tolist()]
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
        self.cached = cache is not None  # the cache's images are PIL's: nothing to decode
        self.decoder = Decode.pil if self.cached else self.choose_decoder(device)
        size = (self.resize, self.resize)
        if cache is not None:
            log.info("%s: reading the %dx%d images from the cache %s", self.title, *size,
                     ", ".join(p.name for p in cache))
            self.files = CachedImages(cache, labels)
        elif self.decoder == Decode.torchvision:
            self.files = ImageBytes(paths, labels, size, self.jpeg_draft)
        else:
            self.files = ImageFiles(paths, labels, size, self.jpeg_draft)
        self._loader = None  # a worker pool is made for these files on first use
        self.device = device
        self.workers = workers
        if self.pipeline.needs_stats:
            start, n = self.ranges["train"]
            chosen = torch.arange(start, start + n)
            if self.stats_images is not None and self.stats_images < n:
                pick = torch.randperm(n, generator=torch.Generator().manual_seed(0))
                chosen = chosen[pick[:self.stats_images].sort().values]
            # the device decoder's pixels differ from PIL's by rounding: their own mean
            decoder = ("torchvision",) if self.decoder == Decode.torchvision else ()
            key = stats_key(type(self).__name__, self.resize, self.jpeg_draft, *decoder,
                            "\n".join(paths[i] for i in chosen.tolist()))

            def compute() -> Stats:
                log.info("%s: computing the training-set mean over %d images (once; cached "
                         "in %s)", self.title, len(chosen), self.folder)
                ids = chosen.tolist()
                batches = [ids[i:i + STATS_BATCH] for i in range(0, len(ids), STATS_BATCH)]
                return compute_stats(x for x, _ in self._run(batches))

            self.stats = cached_stats(self.folder, self.name, key, compute)
        self.pipeline.set_stats(self.stats, device)

    def choose_decoder(self, device: torch.device) -> Decode:
        """``dataset.decode`` for this device: ``auto`` is torchvision on CUDA where
        torchvision can decode JPEGs there, else PIL; ``torchvision`` where it cannot is a
        :class:`ConfigError`."""
        if self.decode == Decode.pil or (self.decode == Decode.auto
                                         and device.type != "cuda"):
            return Decode.pil
        problem = device_decoder_problem(device)
        if problem is None:
            return Decode.torchvision
        if self.decode == Decode.auto:
            log.warning("%s: torchvision cannot decode JPEGs on %s (%s): decoding with PIL "
                        "in the workers (dataset.decode=pil)", self.title, device, problem)
            return Decode.pil
        raise ConfigError(f"dataset.decode=torchvision: torchvision cannot decode JPEGs on "
                          f"{device} here ({problem}); use dataset.decode=pil (or auto)")

    def num_examples(self, split: str) -> int:
        return self.ranges[split][1]

    # -- the cache of resized images ------------------------------------------------------------
    def cache_files(self, split: str) -> tuple[Path, Path, Path]:
        """(images ``[N, H, W, 3]`` uint8, labels ``[N]`` int64, description) of a split's
        cache, beside the data; named by the size, so that another ``resize`` has its own."""
        stem = self.folder / f"rcnnexp-cache-{self.name}-{split}-{self.resize}"
        return (stem.with_name(stem.name + ".npy"), stem.with_name(stem.name + ".labels.npy"),
                stem.with_name(stem.name + ".json"))

    def cache_description(self, split: str, items: Sequence[tuple[str, int]]) -> dict[str, Any]:
        """What a split's cache must have been made from to stand for this config: the
        files (relative to the dataset's folder) and labels, the size and the decoding."""
        prefix = str(self.folder) + os.sep  # (os.path.relpath: seconds for ILSVRC's 1.28 M)
        listing = "\n".join(f"{p.removeprefix(prefix)}\t{label}" for p, label in items)
        return {"dataset": type(self).__name__, "split": split, "count": len(items),
                "resize": self.resize, "jpeg_draft": self.jpeg_draft,
                "key": stats_key("image-cache", listing)}

    def open_cache(self, samples: dict[str, list[tuple[str, int]]]) -> list[Path] | None:
        """The images file of every split's cache, in split order, when the cache is there;
        None when it is not. A cache made for other files, labels or settings is refused
        (:class:`DataError` naming it), never read."""
        splits = [s for s in ("train", "val", "test") if s in samples]
        present = [s for s in splits if any(p.exists() for p in self.cache_files(s))]
        if not present:
            return None
        fix = (f"rebuild it with scripts/prepare_data.py {self.name} --cache (same overrides), "
               "or delete it to decode the image files")
        out = []
        for split in splits:
            images, labels, meta = self.cache_files(split)
            missing = [p for p in (images, labels, meta) if not p.is_file()]
            if missing:
                raise DataError(f"{self.title}: the image cache is incomplete: no {missing[0]}; "
                                f"{fix}")
            expected = self.cache_description(split, samples[split])
            try:
                found = json.loads(meta.read_text())
                array = np.load(images, mmap_mode="r")
                cached_labels = np.load(labels)
            except (OSError, ValueError) as err:
                raise DataError(f"{self.title}: cannot read the image cache {images} "
                                f"({type(err).__name__}: {err}); {fix}") from None
            differs = [k for k in expected if found.get(k) != expected[k]]
            shape = (len(samples[split]), self.resize, self.resize, 3)
            if differs or array.shape != shape or array.dtype != np.uint8 \
                    or cached_labels.tolist() != [label for _, label in samples[split]]:
                what = ", ".join(f"{k}={found.get(k)!r}, not {expected[k]!r}" for k in differs
                                 if k != "key") or "other image files or labels"
                raise DataError(f"{self.title}: the image cache {images} is stale (made with "
                                f"{what}); {fix}")
            out.append(images)
        return out

    def write_cache(self, workers: int = 0) -> list[Path]:
        """Decode every image of every split once, as :func:`load_image` does for this
        config, into the cache beside the data (one memory-mapped ``.npy`` per split, its
        labels and description beside it). A split whose cache is up to date is kept; a
        stale one is replaced only once its new files are complete. Returns the files."""
        samples = self.find_samples()
        size = (self.resize, self.resize)
        written = []
        for split, items in samples.items():
            images, labels, meta = self.cache_files(split)
            description = self.cache_description(split, items)
            try:
                if self.open_cache({split: items}) is not None:
                    log.info("%s: the %s cache %s is up to date", self.title, split, images)
                    written.append(images)
                    continue
            except DataError:
                pass  # stale or incomplete: made anew below
            need = len(items) * size[0] * size[1] * 3
            free = shutil.disk_usage(self.folder).free
            if need > free:
                raise DataError(f"{self.title}: the {split} image cache needs {need / 1e9:.1f} "
                                f"GB in {self.folder}, which has {free / 1e9:.1f} GB free")
            start = time.perf_counter()
            tmp = [p.with_name(f".{p.name}.tmp") for p in (images, labels, meta)]
            try:
                array = np.lib.format.open_memmap(tmp[0], mode="w+", dtype=np.uint8,
                                                  shape=(len(items), *size, 3))
                files = ImageFiles([p for p, _ in items], [lab for _, lab in items], size,
                                   self.jpeg_draft)
                loader = DataLoader(files, batch_size=STATS_BATCH, num_workers=workers,
                                    shuffle=False)
                done = 0
                for batch, _, errors in loader:
                    bad = [e for e in errors if e]
                    if bad:
                        raise DataError(f"{self.title}: {bad[0]}")
                    array[done:done + len(batch)] = batch.permute(0, 2, 3, 1).numpy()
                    done += len(batch)
                array.flush()
                del array
                with tmp[1].open("wb") as f:  # (np.save would add .npy to the name)
                    np.save(f, np.asarray([lab for _, lab in items], dtype=np.int64))
                tmp[2].write_text(json.dumps(description, indent=1) + "\n")
                # the description last: until it is replaced, a half-replaced cache is stale
                for src, dst in zip(tmp, (images, labels, meta), strict=True):
                    os.replace(src, dst)
            finally:
                for p in tmp:
                    p.unlink(missing_ok=True)
            log.info("%s: cached %d %s images in %s (%.0f s)", self.title, len(items), split,
                     images, time.perf_counter() - start)
            written.append(images)
        return written

    # -- batches --------------------------------------------------------------------------------
    def _run(self, batches: list[list[int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Decode these batches of indices in the worker pool (and, with the torchvision
        decoder, on the device): uint8 images and labels on the device."""
        files = self.files
        assert files is not None, "setup() first"
        on_device = isinstance(files, ImageBytes)
        if self._loader is None:
            workers = self.workers
            self._loader = DataLoader(
                files, batch_sampler=self._schedule, num_workers=workers,
                collate_fn=collate_payloads if on_device else None,
                pin_memory=self.device.type == "cuda" and not on_device,
                persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None)
        self._schedule.batches = batches
        for batch, (images, labels, errors) in zip(batches, self._loader, strict=True):
            bad = [e for e in errors if e]
            if bad:
                raise DataError(f"{self.title}: {bad[0]}")
            if on_device:
                assert isinstance(files, ImageBytes)
                try:
                    images = decode_batch(split_payloads(images), (self.resize, self.resize),
                                          self.device)
                except UndecodableImage as err:
                    path = files.path(batch[err.index])
                    raise DataError(f"{self.title}: {image_error(path, err.cause)}") from None
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
        """``batch_size`` images per batch, each with its views: ``[B, V, C, h, w]``."""
        start, n = self.ranges[split]
        ids = list(range(start + rank, start + n, world_size))
        batches = [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]
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
