"""Schemas of the ``dataset`` group: where the data is, how it is split and transformed.

Each ``_target_`` names a :class:`rcnnexp.data.base.DataModule`; building one reads no
file, so ``rcnnexp info`` works without the data on disk.

Preprocessing keys shared by every image dataset (run on whole batches on the training
device, :mod:`rcnnexp.data.transforms`):

* ``normalize``: ``none`` (pixels / 255), ``channel`` (per-channel mean/std of the training
  split), ``pixel`` (minus the training split's mean image, cached beside the data);
* ``crop`` (model input size; null: the stored size), ``padding`` (zero padding before the
  random training crop), ``train_crops`` (``random``: anywhere; ``ten``: at one of the five
  positions of the ten views), ``flip`` (random horizontal flips in training);
* ``views``: test-time views whose softmax outputs are averaged: ``center``, ``grid9`` (3x3
  crops ``view_stride`` pixels apart), ``ten`` (4 corners + centre and their mirrors);
* ``scale``: the normalised pixels are multiplied by it (Caffe's 0..255 inputs: 255);
* ``train_fraction``: train on a class-stratified share of the training split (a search).
"""

from __future__ import annotations

from dataclasses import dataclass

from rcnnexp.config.checks import one_of, positive, require, seed
from rcnnexp.data.choices import Decode, Normalize, TrainCrops, Views


@dataclass
class DatasetConfig:
    _target_: str = "rcnnexp.data.digits.Digits"
    # where datasets live; $RCNNEXP_DATA overrides the default ``data/`` (git-ignored)
    root: str = "${oc.env:RCNNEXP_DATA,data}"
    download: bool = True  # fetch what is missing, where the dataset allows it
    normalize: Normalize = Normalize.channel  # how pixels are normalised
    crop: int | None = None  # model input (square); null: the whole stored image
    padding: int = 0  # zero padding around the image before the random training crop
    train_crops: TrainCrops = TrainCrops.random  # where training crops are taken
    flip: bool = False  # random horizontal flips (probability 1/2) in training
    views: Views = Views.center  # test-time views, their softmax averaged
    view_stride: int = 4  # pixels between the grid9 views
    scale: float = 1.0  # multiplies the normalised pixels
    # the share of the training split trained on (class-stratified, fixed by the seed 0): a
    # search's short trials (conf/search); 1.0: all of it
    train_fraction: float = 1.0

    def __post_init__(self) -> None:
        require(0 < self.train_fraction <= 1,
                f"dataset.train_fraction must be in (0, 1], got {self.train_fraction}")
        require(self.crop is None or self.crop > 0,
                f"dataset.crop must be positive or null, got {self.crop}")
        require(self.padding >= 0, f"dataset.padding must be zero or more, got {self.padding}")
        positive("dataset.view_stride", self.view_stride)
        positive("dataset.scale", self.scale)


@dataclass
class DigitsConfig(DatasetConfig):
    """scikit-learn's bundled 8x8 handwritten digits: 1,797 images, 10 classes, offline."""

    _target_: str = "rcnnexp.data.digits.Digits"
    val_fraction: float = 0.1  # of the images, held out for validation (class-stratified)
    test_fraction: float = 0.2  # of the images, held out for testing
    split_seed: int = 0  # the split is fixed by this seed, not by trainer.seed
    image_size: int = 8  # resize (bilinear) for models that need larger inputs

    def __post_init__(self) -> None:
        super().__post_init__()
        seed("dataset.split_seed", self.split_seed)
        require(0 <= self.val_fraction < 1 and 0 < self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1,
                "dataset.val_fraction and dataset.test_fraction must be fractions that leave "
                f"images to train on, got {self.val_fraction} and {self.test_fraction}")
        require(self.image_size > 0, f"dataset.image_size must be positive, got {self.image_size}")


def _fraction(key: str, value: float) -> None:
    require(0 < value < 1, f"{key} must be a fraction in (0, 1), got {value}")


@dataclass
class CIFAR10Config(DatasetConfig):
    """CIFAR-10 (python version): 50,000 + 10,000 colour 32x32 images, 10 classes."""

    _target_: str = "rcnnexp.data.cifar.CIFAR10"
    normalize: Normalize = Normalize.pixel
    val_split: str = "none"  # none | fraction | rcnn (the last val_size training images)
    val_fraction: float = 0.1  # for val_split=fraction (class-stratified)
    val_size: int = 10000  # for val_split=rcnn
    split_seed: int = 0  # fixes val_split=fraction

    def __post_init__(self) -> None:
        super().__post_init__()
        seed("dataset.split_seed", self.split_seed)
        one_of("dataset.val_split", self.val_split, ["none", "fraction", "rcnn"])
        _fraction("dataset.val_fraction", self.val_fraction)
        positive("dataset.val_size", self.val_size)


@dataclass
class CIFAR100Config(CIFAR10Config):
    """CIFAR-100 (python version): 50,000 + 10,000 colour 32x32 images, 100 classes."""

    _target_: str = "rcnnexp.data.cifar.CIFAR100"


@dataclass
class MNISTConfig(DatasetConfig):
    """MNIST: 60,000 + 10,000 grey 28x28 digits (IDX files)."""

    _target_: str = "rcnnexp.data.mnist.MNIST"
    normalize: Normalize = Normalize.none
    val_split: str = "none"  # none | fraction
    val_fraction: float = 0.1  # for val_split=fraction (class-stratified)
    split_seed: int = 0  # fixes val_split=fraction

    def __post_init__(self) -> None:
        super().__post_init__()
        seed("dataset.split_seed", self.split_seed)
        one_of("dataset.val_split", self.val_split, ["none", "fraction"])
        _fraction("dataset.val_fraction", self.val_fraction)


@dataclass
class SVHNConfig(DatasetConfig):
    """SVHN cropped digits: train 73,257, extra 531,131, test 26,032 colour 32x32 images."""

    _target_: str = "rcnnexp.data.svhn.SVHN"
    normalize: Normalize = Normalize.pixel
    val_split: str = "rcnn"  # rcnn | none
    extra: bool = True  # train on train + extra (false: train only)
    val_per_class_train: int = 400  # val_split=rcnn: held out per class from train
    val_per_class_extra: int = 200  # ... and from extra
    split_seed: int = 0  # fixes which images val_split=rcnn holds out

    def __post_init__(self) -> None:
        super().__post_init__()
        seed("dataset.split_seed", self.split_seed)
        one_of("dataset.val_split", self.val_split, ["rcnn", "none"])
        require(self.val_split != "rcnn" or self.extra,
                "dataset.val_split=rcnn draws validation images from SVHN's extra set: set "
                "dataset.extra=true, or dataset.val_split=none for train only")
        positive("dataset.val_per_class_train", self.val_per_class_train)
        positive("dataset.val_per_class_extra", self.val_per_class_extra)


@dataclass
class FolderDatasetConfig(DatasetConfig):
    """Image files decoded by DataLoader workers, resized (warped) to resize x resize."""

    normalize: Normalize = Normalize.pixel
    resize: int = 256  # every image is resized to resize x resize (Caffe's warp)
    crop: int | None = 227
    train_crops: TrainCrops = TrainCrops.ten
    flip: bool = True
    views: Views = Views.ten
    # pil: DataLoader workers decode and resize with PIL; torchvision: workers only read the
    # files, the training device decodes whole batches (nvJPEG on CUDA) and resizes them;
    # auto: torchvision on CUDA, pil elsewhere. A cache (scripts/prepare_data.py --cache)
    # beside the data, when there, replaces both: no decoding at all
    decode: Decode = Decode.auto
    jpeg_draft: bool = True  # pil: decode large JPEGs at 1/2, 1/4 or 1/8 scale (>= resize)
    stats_images: int | None = None  # training images the mean is computed on; null: all

    def __post_init__(self) -> None:
        super().__post_init__()
        positive("dataset.resize", self.resize)
        require(self.crop is None or self.crop <= self.resize,
                f"dataset.crop={self.crop} must be at most dataset.resize={self.resize}")
        require(self.stats_images is None or self.stats_images > 0,
                f"dataset.stats_images must be positive or null, got {self.stats_images}")


@dataclass
class ImageNetConfig(FolderDatasetConfig):
    """ILSVRC-2012: 1.28 M training images, the 50,000 validation images as test split."""

    _target_: str = "rcnnexp.data.imagenet.ImageNet"
    num_classes: int = 1000  # class folders expected (ILSVRC: 1000)

    def __post_init__(self) -> None:
        super().__post_init__()
        positive("dataset.num_classes", self.num_classes)


@dataclass
class SUN397Config(FolderDatasetConfig):
    """SUN397 with one of its ten official partitions (50 + 50 images per class)."""

    _target_: str = "rcnnexp.data.scenes.SUN397"
    partition: int = 1  # 1..10

    def __post_init__(self) -> None:
        super().__post_init__()
        require(1 <= self.partition <= 10,
                f"dataset.partition must be 1..10 (SUN397's official partitions), got "
                f"{self.partition}")


@dataclass
class MITIndoorConfig(FolderDatasetConfig):
    """MIT Indoor 67 with the official TrainImages.txt / TestImages.txt (5,360 / 1,340)."""

    _target_: str = "rcnnexp.data.scenes.MITIndoor"


DATASET_SCHEMAS: dict[str, type] = {
    "digits": DigitsConfig,
    "cifar10": CIFAR10Config,
    "cifar100": CIFAR100Config,
    "mnist": MNISTConfig,
    "svhn": SVHNConfig,
    "imagenet": ImageNetConfig,
    "sun397": SUN397Config,
    "mitindoor": MITIndoorConfig,
}
