"""Model families. Each is built from its config's ``_target_`` with the dataset's
``in_channels``, ``num_classes`` and ``image_size``; the engine names none of them."""

from rcnnexp.models.base import ImageClassifier
from rcnnexp.models.rcnn import RCNN

__all__ = ["RCNN", "ImageClassifier"]
