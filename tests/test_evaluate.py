"""Multi-view evaluation: each image's softmax outputs averaged over its test-time views
(RCNN's 9 crops, C-RNN's 10 views), checked against a hand computation."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from rcnnexp.engine.evaluate import evaluate
from rcnnexp.engine.runtime import make_runtime


class ViewsAreLogits(nn.Module):
    """A model whose logits are its input: each view below is the logits it scores."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


# two batches of [B, V=2 views, 3 classes] logits, one image a row
BATCHES = [
    (torch.tensor([[[4.0, 0.0, 0.0], [-20.0, 1.0, 0.0]],  # image A, label 0
                   [[0.0, 0.0, 3.0], [0.0, 0.0, 3.0]]]),  # image B, label 1
     torch.tensor([0, 1])),
    (torch.tensor([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]]),  # image C, label 0
     torch.tensor([0])),
]


class FixedViews:
    """:data:`BATCHES` as [B, V, C, H=1, W=1] images, as DataModule.eval_batches gives them."""

    def eval_batches(self, split: str, batch_size: int, rank: int = 0, world_size: int = 1
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for views, labels in BATCHES:
            yield views[..., None, None], labels


def softmax(logits: list[float]) -> list[float]:
    exps = [math.exp(v) for v in logits]
    return [e / sum(exps) for e in exps]


def test_the_softmax_is_averaged_over_each_images_views() -> None:
    # by hand: the mean of each image's two softmax outputs
    probs = [[(a + b) / 2 for a, b in zip(softmax(v1), softmax(v2), strict=True)]
             for v1, v2 in ([[4, 0, 0], [-20, 1, 0]], [[0, 0, 3], [0, 0, 3]],
                            [[1, 0, 0], [0, 2, 0]])]
    labels = [0, 1, 0]
    # A: class 0 (0.48 against 0.37), where averaging logits would pick class 1; B: class 2,
    # wrong; C: class 1 (0.50 against 0.34), wrong, where its first view alone is right
    assert [max(range(3), key=p.__getitem__) for p in probs] == [0, 2, 1]
    loss = -sum(math.log(p[y]) for p, y in zip(probs, labels, strict=True)) / 3

    metrics = evaluate(ViewsAreLogits(), FixedViews(), "test", 4,  # type: ignore[arg-type]
                       make_runtime("cpu", "fp32"))
    assert metrics["top1"] == 100 / 3
    assert metrics["top5"] == 100.0  # three classes: every label is among the top 5
    assert metrics["loss"] == pytest.approx(loss, rel=1e-6)
