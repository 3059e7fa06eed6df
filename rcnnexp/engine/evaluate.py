"""Evaluation over a split: softmax outputs averaged over each image's test-time views."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from rcnnexp.data.base import DataModule
from rcnnexp.engine.distributed import all_reduce_sum
from rcnnexp.engine.runtime import Runtime, eval_mode


def topk_correct(probs: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """How many rows have their label among the k highest scores."""
    k = min(k, probs.shape[1])
    top = probs.topk(k, dim=1).indices
    return (top == labels[:, None]).any(dim=1).sum()


def evaluate(model: torch.nn.Module, data: DataModule, split: str, batch_size: int,
             runtime: Runtime, limit_batches: int | None = None) -> dict[str, float]:
    """Loss (NLL of the view-averaged softmax), top-1 and top-5 accuracy in percent, over
    every image of ``split`` (each rank scores its share and the sums are all-reduced), in
    batches of ``batch_size`` images (``trainer.eval_batch_size``; the model sees each
    batch's images x views at once); a check run (``trainer.limit_batches``) scores only
    the first ``limit_batches`` batches of each rank."""
    sums = torch.zeros(4, dtype=torch.float64, device=runtime.device)  # loss, top1, top5, n
    batches = itertools.islice(
        data.eval_batches(split, batch_size, runtime.rank, runtime.world_size), limit_batches)
    with eval_mode(model):
        for x, y in batches:
            b, v = x.shape[:2]
            with runtime.autocast():
                logits = model(x.flatten(0, 1))
            probs = logits.float().softmax(dim=1).view(b, v, -1).mean(dim=1)
            sums[0] += F.nll_loss(probs.clamp_min(1e-12).log(), y, reduction="sum")
            sums[1] += topk_correct(probs, y, 1)
            sums[2] += topk_correct(probs, y, 5)
            sums[3] += b
    loss, top1, top5, n = all_reduce_sum(sums).tolist()
    n = max(n, 1.0)
    return {"loss": loss / n, "top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n}
