"""Datasets small enough to live on the training device as one uint8 tensor per split.

Batches are gathered by index from that tensor, then cropped, flipped and normalised on the
device, a whole batch at a time (:class:`rcnnexp.data.transforms.BatchPipeline`): no PIL, no
worker processes, no per-image Python. The shuffling order, the crop offsets and the flips
all come from the epoch's generator, so an epoch is a function of (seed, epoch) alone.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from rcnnexp.data.base import Batch, DataModule, DataSpec
from rcnnexp.data.transforms import BatchPipeline, Stats, cached_stats, compute_stats, stats_key
from rcnnexp.errors import DataError

log = logging.getLogger("rcnnexp")

STATS_CHUNK = 2048  # images per step when computing training-set statistics


class TensorDataModule(DataModule):
    """Subclasses set ``channels``, ``num_classes`` and ``stored_size`` (their images' size)
    before calling ``super().__init__``, and implement :meth:`load_splits`."""

    channels: int
    num_classes: int
    stored_size: tuple[int, int]
    name: str = "data"  # names the statistics cache file

    def __init__(self, *, root: str, download: bool, train_fraction: float = 1.0,
                 **transforms: Any) -> None:
        """``transforms``: the keyword arguments of :class:`BatchPipeline` (normalize, crop,
        padding, train_crops, flip, views, view_stride, scale)."""
        self.root = root
        self.download = download
        self.train_fraction = train_fraction
        self.pipeline = BatchPipeline(self.stored_size, **transforms)
        self.images: dict[str, torch.Tensor] = {}  # split -> uint8 [N, C, H, W]
        self.labels: dict[str, torch.Tensor] = {}  # split -> int64 [N]
        self.stats: Stats | None = None

    @property
    def spec(self) -> DataSpec:
        return DataSpec(in_channels=self.channels, num_classes=self.num_classes,
                        image_size=self.pipeline.out_size)

    @abstractmethod
    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Each split as (uint8 images [N, C, H, W], int64 labels [N]) on the CPU."""

    def cache_dir(self) -> Path | None:
        """Where the training-split statistics are cached (beside the data); None: nowhere."""
        return None

    def split_description(self) -> str:
        """What defines the training split, for the statistics cache key."""
        return ""

    def setup(self, device: torch.device, workers: int = 0, merge_validation: bool = False
              ) -> None:
        loaded = self.load_splits()
        if merge_validation and "val" in loaded:
            (xt, yt), (xv, yv) = loaded["train"], loaded.pop("val")
            loaded["train"] = (torch.cat([xt, xv]), torch.cat([yt, yv]))
        if self.train_fraction < 1 and "train" in loaded:
            images, labels = loaded["train"]
            keep = training_share(labels, self.train_fraction)
            loaded["train"] = (images[keep], labels[keep])
        for split, (images, labels) in loaded.items():
            expected = (self.channels, *self.stored_size)
            if (images.dtype != torch.uint8 or images.dim() != 4
                    or tuple(images.shape[1:]) != expected or len(images) != len(labels)):
                raise DataError(f"{type(self).__name__}: split {split!r} is not N uint8 images "
                                f"[N, {', '.join(map(str, expected))}] with N labels (got "
                                f"{tuple(images.shape)}, {images.dtype}, {len(labels)} labels)")
            if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
                raise DataError(f"{type(self).__name__}: split {split!r} has labels outside "
                                f"0..{self.num_classes - 1} (min {int(labels.min())}, max "
                                f"{int(labels.max())}); the files are not this dataset's")
        if "train" not in loaded or len(loaded["train"][1]) == 0:
            raise DataError(f"{type(self).__name__}: no training images")
        for split, (images, labels) in loaded.items():
            self.images[split] = images.to(device)
            self.labels[split] = labels.to(device=device, dtype=torch.long)
        self.splits = tuple(s for s in ("train", "val", "test") if s in self.images)
        if self.pipeline.needs_stats:
            train = self.images["train"]
            key = stats_key(type(self).__name__, tuple(train.shape), self.split_description(),
                            self.labels["train"])
            self.stats = cached_stats(
                self.cache_dir(), self.name, key,
                lambda: compute_stats(train[i:i + STATS_CHUNK]
                                      for i in range(0, len(train), STATS_CHUNK)))
        self.pipeline.set_stats(self.stats, device)

    def num_examples(self, split: str) -> int:
        return len(self.labels[split])

    # -- batches --------------------------------------------------------------------------------
    def train_batches(self, batch_size: int, generator: torch.Generator, rank: int = 0,
                      world_size: int = 1, augment: torch.Generator | None = None
                      ) -> Iterator[Batch]:
        images, labels = self.images["train"], self.labels["train"]
        order = torch.randperm(len(labels), generator=generator, device=generator.device)
        order = order.to(images.device)[rank::world_size]
        for b in range(self.num_train_batches(batch_size, world_size)):
            idx = order[b * batch_size:(b + 1) * batch_size]
            yield self.pipeline.train(images[idx], augment or generator), labels[idx]

    def eval_batches(self, split: str, batch_size: int, rank: int = 0,
                     world_size: int = 1) -> Iterator[Batch]:
        """``batch_size`` images per batch, each with its views: ``[B, V, C, h, w]``."""
        images, labels = self.images[split], self.labels[split]
        idx = torch.arange(rank, len(labels), world_size, device=images.device)
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            yield self.pipeline.eval(images[chunk]), labels[chunk]


def stratified_split(labels: torch.Tensor, fractions: tuple[float, ...], seed: int
                     ) -> list[torch.Tensor]:
    """Indices of len(fractions)+1 disjoint parts, each class divided in the given fractions
    (the last part takes the rest); sorted, and fixed by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in range(len(fractions) + 1)]
    for cls in labels.unique(sorted=True):
        idx = (labels == cls).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        start = 0
        for i, frac in enumerate(fractions):
            n = round(frac * len(idx))
            parts[i].append(idx[start:start + n])
            start += n
        parts[-1].append(idx[start:])
    return [torch.cat(p).sort().values for p in parts]


def training_share(labels: torch.Tensor, fraction: float) -> torch.Tensor:
    """Indices of a class-stratified ``fraction`` of the training images
    (``dataset.train_fraction``), the same for every seed and run: seeded by 0."""
    return stratified_split(labels, (fraction,), 0)[0]


def per_class_split(labels: torch.Tensor, per_class: int, seed: int, what: str = "the data",
                    key: str = "the number per class") -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rest): ``per_class`` random indices of every class, and all the others;
    both sorted, fixed by ``seed``. Raises ``DataError`` where a class has too few."""
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for cls in labels.unique(sorted=True):
        idx = (labels == cls).nonzero().flatten()
        if len(idx) <= per_class:
            raise DataError(f"{what}: class {int(cls)} has only {len(idx)} images, not more "
                            f"than the {per_class} to hold out for validation ({key}); these "
                            "are not the full files")
        chosen.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    mask = torch.zeros(len(labels), dtype=torch.bool)
    picked = torch.cat(chosen)
    mask[picked] = True
    return picked.sort().values, (~mask).nonzero().flatten()
