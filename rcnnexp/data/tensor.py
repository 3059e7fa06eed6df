"""Datasets small enough to live on the training device as one uint8 tensor per split.

Batches are gathered by index from that tensor, then augmented and normalised on the
device, a whole batch at a time: no PIL, no worker processes, no per-image Python.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator

import torch

from rcnnexp.data.base import Batch, DataModule
from rcnnexp.errors import DataError


class TensorDataModule(DataModule):
    def __init__(self, root: str, download: bool, normalize: str = "channel") -> None:
        self.root = root
        self.download = download
        self.normalize = normalize
        self.images: dict[str, torch.Tensor] = {}  # split -> uint8 [N, C, H, W]
        self.labels: dict[str, torch.Tensor] = {}  # split -> int64 [N]
        self.mean: torch.Tensor | None = None  # [1, C, 1, 1], in [0, 1] units
        self.std: torch.Tensor | None = None

    @abstractmethod
    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Each split as (uint8 images [N, C, H, W], int64 labels [N]) on the CPU."""

    def setup(self, device: torch.device, workers: int = 0) -> None:
        for split, (images, labels) in self.load_splits().items():
            if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels):
                raise DataError(f"{type(self).__name__}: split {split!r} is not N uint8 images "
                                f"[N, C, H, W] with N labels (got {tuple(images.shape)}, "
                                f"{images.dtype}, {len(labels)} labels)")
            self.images[split] = images.to(device)
            self.labels[split] = labels.to(device=device, dtype=torch.long)
        self.splits = tuple(s for s in ("train", "val", "test") if s in self.images)
        train = self.images["train"].double().div_(255)
        if self.normalize == "channel":
            self.mean = train.mean(dim=(0, 2, 3), keepdim=True).float()
            self.std = train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6).float()

    def num_examples(self, split: str) -> int:
        return len(self.labels[split])

    # -- transforms, on whole batches on the device --------------------------------------------
    def to_float(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W] -> normalised float32."""
        x = images.float().div_(255)
        if self.mean is not None and self.std is not None:
            x = x.sub_(self.mean).div_(self.std)
        return x

    def augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Training augmentation of a uint8 batch (none here; datasets override)."""
        return images

    def views(self, images: torch.Tensor) -> torch.Tensor:
        """Test-time views of a uint8 batch: [B, C, H, W] -> [B, V, C, h, w] (here V=1)."""
        return images.unsqueeze(1)

    # -- batches --------------------------------------------------------------------------------
    def train_batches(self, batch_size: int, generator: torch.Generator, rank: int = 0,
                      world_size: int = 1) -> Iterator[Batch]:
        images, labels = self.images["train"], self.labels["train"]
        order = torch.randperm(len(labels), generator=generator, device=generator.device)
        order = order.to(images.device)[rank::world_size]
        for b in range(self.num_train_batches(batch_size, world_size)):
            idx = order[b * batch_size:(b + 1) * batch_size]
            yield self.to_float(self.augment(images[idx], generator)), labels[idx]

    def eval_batches(self, split: str, batch_size: int, rank: int = 0,
                     world_size: int = 1) -> Iterator[Batch]:
        images, labels = self.images[split], self.labels[split]
        idx = torch.arange(rank, len(labels), world_size, device=images.device)
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            views = self.views(images[chunk])
            b, v = views.shape[:2]
            x = self.to_float(views.flatten(0, 1)).unflatten(0, (b, v))
            yield x, labels[chunk]
