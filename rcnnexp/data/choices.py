"""The datasets' settings that take one of a fixed set of names, one Choice each.

The schema in ``rcnnexp/config/dataset.py`` types its fields with these (OmegaConf refuses
other names while composing) and :class:`rcnnexp.data.transforms.BatchPipeline` converts what
it is given with :func:`choice`. Without torch, like ``rcnnexp/models/choices.py``, so that
composing and validating a config does not wait for torch to load.
"""

from __future__ import annotations

from typing import TypeVar

from rcnnexp.choice import Choice
from rcnnexp.errors import ConfigError

C = TypeVar("C", bound=Choice)


class Normalize(Choice):
    none = "none"  # pixels / 255 (times dataset.scale): RCNN on MNIST
    channel = "channel"  # minus the training set's channel mean, over its channel std
    pixel = "pixel"  # minus the training set's mean image (RCNN, Caffe's mean subtraction)


class Views(Choice):
    center = "center"  # one central crop
    grid9 = "grid9"  # 9 crops on a 3x3 grid, dataset.view_stride pixels apart (RCNN)
    ten = "ten"  # the 4 corners and the centre, and their mirrors (C-RNN, Caffe)


class TrainCrops(Choice):
    random = "random"  # a crop anywhere in the (padded) image
    ten = "ten"  # one of the 4 corners or the centre (C-RNN's 10 sub-crops, with flips)


class Decode(Choice):
    auto = "auto"  # torchvision on a CUDA device, pil elsewhere
    pil = "pil"  # DataLoader workers decode and resize with PIL (the CPU path)
    torchvision = "torchvision"  # workers read bytes; the device decodes batches (nvJPEG)


def choice(kind: type[C], key: str, value: object) -> C:
    """``value`` as a member of ``kind``, or a :class:`ConfigError` naming ``key``."""
    try:
        return kind.of(key, value)
    except ValueError as err:
        raise ConfigError(str(err)) from None


__all__ = ["Decode", "Normalize", "TrainCrops", "Views", "choice"]
