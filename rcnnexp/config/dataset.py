"""Schemas of the ``dataset`` group: where the data is, how it is split and transformed.

Each ``_target_`` names a :class:`rcnnexp.data.base.DataModule`; building one reads no
file, so ``rcnnexp info`` works without the data on disk.
"""

from __future__ import annotations

from dataclasses import dataclass

from rcnnexp.config.checks import one_of, require


@dataclass
class DatasetConfig:
    _target_: str = "rcnnexp.data.digits.Digits"
    # where datasets live; $RCNNEXP_DATA overrides the default ``data/`` (git-ignored)
    root: str = "${oc.env:RCNNEXP_DATA,data}"
    download: bool = True  # fetch what is missing, where the dataset allows it
    normalize: str = "channel"  # none | channel (mean/std per channel of the train split)

    def __post_init__(self) -> None:
        one_of("dataset.normalize", self.normalize, ["none", "channel"])


@dataclass
class DigitsConfig(DatasetConfig):
    """scikit-learn's bundled 8x8 handwritten digits: 1,797 images, 10 classes, offline."""

    _target_: str = "rcnnexp.data.digits.Digits"
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0  # the split is fixed by this seed, not by trainer.seed
    image_size: int = 8  # resize (bilinear) for models that need larger inputs


    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 <= self.val_fraction < 1 and 0 < self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1,
                "dataset.val_fraction and dataset.test_fraction must be fractions that leave "
                f"images to train on, got {self.val_fraction} and {self.test_fraction}")
        require(self.image_size > 0, f"dataset.image_size must be positive, got {self.image_size}")
