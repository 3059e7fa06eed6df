"""Model families. Each is built from its config's ``_target_`` with the dataset's
``in_channels``, ``num_classes`` and ``image_size``; the engine names none of them."""

from rcnnexp.models.alexnet import AlexNet
from rcnnexp.models.base import ImageClassifier
from rcnnexp.models.crnn import CRNN
from rcnnexp.models.rcnn import RCNN
from rcnnexp.models.recnet import RecNet

__all__ = ["CRNN", "RCNN", "AlexNet", "ImageClassifier", "RecNet"]
