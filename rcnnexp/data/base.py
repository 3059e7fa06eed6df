"""The interface every dataset implements, and what the engine may ask of it.

A :class:`DataModule` is built from its config without touching the disk (so ``rcnnexp
info`` needs no data); :meth:`DataModule.setup` then loads it. The engine asks for batches
only through :meth:`train_batches` and :meth:`eval_batches`, which take the process rank
and world size so that a distributed run gets disjoint shards.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import torch

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its input: it is built with these three."""

    in_channels: int
    num_classes: int
    image_size: tuple[int, int]  # (H, W) of the tensors the model sees


class DataModule(ABC):
    """A dataset with its splits, preprocessing, augmentation and test-time views."""

    #: the splits this dataset provides, in order: some of train, val, test
    splits: tuple[str, ...] = ("train", "val", "test")

    @property
    @abstractmethod
    def spec(self) -> DataSpec:
        """Channels, classes and model input size, known before :meth:`setup`."""

    @abstractmethod
    def setup(self, device: torch.device, workers: int = 0, merge_validation: bool = False
              ) -> None:
        """Load the data (raising :class:`rcnnexp.errors.DataError` when it is missing).

        ``device`` is where training runs; ``workers`` is ``trainer.workers``, the loader
        processes a file-based dataset may use. ``merge_validation`` trains on the training
        and validation images together and leaves no validation split (RCNN's retraining on
        all training images); statistics such as the mean image are then those of both."""

    @abstractmethod
    def missing(self) -> str | None:
        """What of this dataset's files is not on disk, as a phrase naming the folder looked
        in and what it lacks (and whether :meth:`setup` would download it); None when
        nothing is missing, or nothing is read from disk. It only looks: nothing is read,
        fetched or written (a sweep's dry run asks it of every job)."""

    @abstractmethod
    def num_examples(self, split: str) -> int: ...

    def num_train_batches(self, batch_size: int, world_size: int = 1) -> int:
        """Batches per epoch and process; the last incomplete batch is dropped."""
        return self.num_examples("train") // world_size // batch_size

    @abstractmethod
    def train_batches(self, batch_size: int, generator: torch.Generator, rank: int = 0,
                      world_size: int = 1, augment: torch.Generator | None = None
                      ) -> Iterator[Batch]:
        """One epoch of augmented, normalised batches of ``batch_size`` on the training device:
        rank ``rank``'s share of an order that every rank draws alike from ``generator``.

        The order comes from ``generator``, the crops and flips from ``augment`` (None:
        ``generator`` too, as in a one-process run), so an epoch is a function of the two
        generators' seeds alone.
        """

    @abstractmethod
    def eval_batches(self, split: str, batch_size: int, rank: int = 0,
                     world_size: int = 1) -> Iterator[Batch]:
        """Batches of ``split`` as ``(x, y)`` with ``x`` of shape ``[B, V, C, H, W]``: B of
        ``batch_size`` images (fewer in the last), V test-time views per image, whose softmax
        outputs evaluation averages."""
