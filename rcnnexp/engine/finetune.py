"""Fine-tuning: start from a trained model's weights, with a new classifier and frozen parts."""

from __future__ import annotations

from rcnnexp.engine.checkpoint import load_checkpoint, load_model_state
from rcnnexp.errors import ConfigError
from rcnnexp.models.base import ImageClassifier


def apply_finetune(model: ImageClassifier, checkpoint: str, trainable: list[str] | None
                   ) -> None:
    """Load a trained model's weights but its classifier, then freeze all parts not named."""
    state = load_checkpoint(checkpoint, needs=("model",))["model"]  # weights are enough
    classifier_keys = {f"classifier.{k}" for k in model.classifier.state_dict()}
    body = {k: v for k, v in state.items() if k not in classifier_keys}
    own = {k: v for k, v in model.state_dict().items() if k in classifier_keys}
    load_model_state(model, {**body, **own}, f"finetune.checkpoint={checkpoint}")
    if trainable is None:
        return
    parts = model.parts()
    unknown = [name for name in trainable if name not in parts]
    if unknown:
        raise ConfigError(f"finetune.trainable names {unknown}, which {model.arch} does not "
                          f"have; its parts are {list(parts)}")
    for name, part in parts.items():
        part.requires_grad_(name in trainable)
