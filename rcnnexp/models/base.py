"""What every model offers the engine beyond ``forward``: a classifier head it can replace.

Fine-tuning swaps the head for the new dataset's classes (:meth:`reset_classifier`, as in
timm) and freezes parts by name (:meth:`parts`); neither needs to know the family.
"""

from __future__ import annotations

from torch import nn


class ImageClassifier(nn.Module):
    """Base class of the model families. Subclasses set ``self.classifier`` (an
    ``nn.Linear``) and build ``(in_channels, num_classes, image_size)`` inputs."""

    classifier: nn.Linear

    @property
    def arch(self) -> str:
        """A short name for logs and results, e.g. ``RCNN-96``."""
        return type(self).__name__

    def parts(self) -> dict[str, nn.Module]:
        """The model's named top-level parts, which ``finetune.trainable`` refers to."""
        return dict(self.named_children())

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a freshly initialised one with ``num_classes`` outputs."""
        old = self.classifier
        self.classifier = nn.Linear(old.in_features, num_classes, bias=old.bias is not None,
                                    device=old.weight.device, dtype=old.weight.dtype)
