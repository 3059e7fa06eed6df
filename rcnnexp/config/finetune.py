"""Schema of ``finetune``: start from a trained model, new classifier, optionally frozen parts."""

from __future__ import annotations

from dataclasses import dataclass, field

from rcnnexp.config.checks import require


@dataclass
class FinetuneConfig:
    # a checkpoint of the same architecture; everything but its classifier is loaded and
    # the classifier is rebuilt for this dataset's classes
    checkpoint: str | None = None
    # names of the model's parts that keep learning (`rcnnexp info` lists them), e.g.
    # [rnn, classifier] for C-RNN on MIT Indoor; null: every part learns
    trainable: list[str] | None = None
    # trained models by model option, for sweeps whose rows start from different ones: a
    # preset takes its model's (C-RNN's tables: finetune.pretrained.crnn=PATH, ...alexnet=PATH)
    pretrained: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(self.trainable is None or len(self.trainable) > 0,
                "finetune.trainable must name at least one part, or be null for all parts")
        require(self.trainable is None or self.checkpoint is not None,
                "finetune.trainable needs finetune.checkpoint=PATH (the trained model to start "
                "from, e.g. outputs/DATE/TIME/checkpoints/best.pt)")
