"""What a finished run reports: results.json and the paper's row beside it.

:func:`summarize` reads only the trainer's state and the run's identity, so the same
summary comes out of an uninterrupted run and of one resumed from a checkpoint.
"""

from __future__ import annotations

from typing import Any

from rcnnexp.config import Config
from rcnnexp.config.root import PaperResult
from rcnnexp.engine.build import count_params
from rcnnexp.engine.distributed import backend_name
from rcnnexp.engine.trainer import Trainer
from rcnnexp.models.base import ImageClassifier


def summarize(typed: Config, identity: dict[str, Any], model: ImageClassifier, flops: int,
              trainer: Trainer, threads: int) -> dict[str, Any]:
    """results.json: the run's identity, its best-epoch metrics, and what it cost.

    ``identity`` holds what the command line knows: ``model``, ``dataset``, ``experiment``
    (the chosen options), ``overrides`` and ``run_dir``.
    """
    state = trainer.state
    history = state.history
    best = next((r for r in history if r["epoch"] == state.best_epoch), history[-1])
    last = history[-1]
    train_time = sum(r["epoch_time_s"] for r in history)
    images = sum(r["images_per_s"] * r["epoch_time_s"] for r in history)
    top1, top5 = best.get("test_top1"), best.get("test_top5")
    results = {
        "name": typed.name,
        "model": identity.get("model", type(model).__name__),
        "arch": model.arch,
        "dataset": identity.get("dataset", type(typed.dataset).__name__),
        "experiment": identity.get("experiment"),
        "params": count_params(model),
        "trainable_params": count_params(model, trainable_only=True),
        "flops": flops,
        "epochs": len(history),
        "best_epoch": state.best_epoch,
        "test_top1": top1,
        "test_top5": top5,
        "test_error": None if top1 is None else 100.0 - top1,
        "test_top5_error": None if top5 is None else 100.0 - top5,
        "best_val_top1": state.best_val_top1,
        "last_test_top1": last.get("test_top1"),
        "train_top1": last["train_top1"],
        "train_loss": last["train_loss"],
        "train_images": trainer.data.num_examples("train"),
        # the test top-1's denominator: the report's binomial error bar needs it
        "test_images": (trainer.data.num_examples("test") if "test" in trainer.data.splits
                        else None),
        "stopped_early": trainer.stopped_early,
        "wall_s": trainer.elapsed_s,
        "train_s": train_time,
        "images_per_s": images / max(train_time, 1e-9),
        "seed": typed.trainer.seed,
        "device": str(trainer.runtime.device),
        # how it ran there: torchrun's processes and their backend (null for one), and each
        # process's CPU threads (trainer.threads as it resolved: the sums' order depends on it)
        "processes": trainer.runtime.world_size,
        "backend": backend_name(),
        "threads": threads,
        "precision": trainer.runtime.precision,
        # TF32 products in fp32 matmuls and convolutions (trainer.tf32 on CUDA), which the
        # report marks: the papers trained in full fp32
        "tf32": typed.trainer.tf32 and trainer.runtime.device.type == "cuda",
        # a check run's (trainer.limit_batches): a few batches only, never a paper's number
        "limit_batches": typed.trainer.limit_batches,
        "overrides": list(identity.get("overrides", [])),
        "run_dir": str(identity.get("run_dir", "")),
    }
    results["paper"] = None if typed.paper is None else paper_versus_run(typed.paper, results)
    return results


def paper_versus_run(paper: PaperResult, results: dict[str, Any]) -> dict[str, Any]:
    """The paper's row and numbers for this run's dataset, ours in the same metrics beside them.

    A run on a dataset the row reports nothing for (``experiment=recnet/t2b_e8
    dataset=svhn``) keeps the row with an empty comparison.
    """
    dataset = results.get("dataset")
    compared = []
    for v in paper.values:
        if v.dataset != dataset:
            continue
        ours = results.get(v.metric.value)
        compared.append({"metric": v.metric.value, "value": v.value, "ours": ours,
                         "difference": None if ours is None else ours - v.value})
    return {"paper": paper.paper, "table": paper.table, "row": paper.row, "dataset": dataset,
            "reported_on": sorted({v.dataset for v in paper.values}), "params": paper.params,
            "decimals": paper.decimals, "metrics": compared}
