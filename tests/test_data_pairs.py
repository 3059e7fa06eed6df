"""Every (model, dataset) pair composes and trains one step on the tiny data, or refuses
before training with a message naming the input size it needs. The models and datasets are
the options in conf/model and conf/dataset at collection time, so new ones are covered: one
model option per family (an option built on its own schema, ``/schema/model@_here_``);
options that only resize a family (``defaults: [recnet]``) add no new input handling."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, compose_config, run_cli
from tiny_data import TINY_OVERRIDES

from rcnnexp.config import validate
from rcnnexp.engine.build import build_data, build_model, build_optimizer
from rcnnexp.errors import UserError


def model_families() -> list[str]:
    return sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml")
                  if "/schema/model@_here_" in p.read_text())


MODELS = model_families()
DATASETS = sorted(p.stem for p in (REPO / "conf" / "dataset").glob("*.yaml"))


@pytest.fixture(scope="module")
def root(tiny_data_root: Path) -> Path:
    return tiny_data_root


def test_every_dataset_has_tiny_files() -> None:
    assert set(DATASETS) <= set(TINY_OVERRIDES), "add the new dataset to tests/tiny_data.py"


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("model", MODELS)
def test_model_trains_a_step_on_dataset(model: str, dataset: str, root: Path) -> None:
    cfg = compose_config([f"model={model}", f"dataset={dataset}", f"dataset.root={root}",
                          "dataset.download=false", *TINY_OVERRIDES.get(dataset, [])])
    validate(cfg)
    data = build_data(cfg.dataset)
    spec = data.spec
    try:
        net = build_model(cfg.model, spec)
    except UserError as err:  # the model refuses this input size, before any data is read
        message = str(err)
        side = min(spec.image_size)
        assert "\n" not in message
        assert any(int(n) > side for n in re.findall(r"\d+", message)), (
            f"{model} refused {spec.image_size} inputs without naming the size it needs: "
            f"{message}")
        return
    data.setup(torch.device("cpu"), 0)
    x, y = next(data.train_batches(2, torch.Generator().manual_seed(0)))
    assert x.shape == (2, spec.in_channels, *spec.image_size) and x.dtype == torch.float32
    optimizer = build_optimizer(cfg.optim, net)
    net.train()
    loss = F.cross_entropy(net(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    for split in data.splits:
        views, labels = next(data.eval_batches(split, 10))
        assert views.shape[2:] == (spec.in_channels, *spec.image_size)
        assert len(views) == len(labels) > 0


def test_train_end_to_end_with_rcnn_augmentation(root: Path, tmp_path: Path) -> None:
    """The CLI on tiny CIFAR-10 with RCNN's protocol: validation = the last images, 24x24
    crops and flips, 9 test crops; results.json holds val and test accuracies."""
    run = tmp_path / "run"
    proc = run_cli("train", "dataset=cifar10", f"dataset.root={root}", "dataset.download=false",
                   *TINY_OVERRIDES["cifar10"], "dataset.val_split=rcnn", "dataset.val_size=8",
                   "dataset.crop=24", "dataset.flip=true", "dataset.views=grid9", "model.K=8",
                   "model.T=1", "trainer.epochs=2", "trainer.batch_size=8",
                   "trainer.progress=false", "trainer.device=cpu", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((run / "results.json").read_text())
    assert results["best_val_top1"] is not None and results["test_top1"] is not None
    assert "RCNN-8" in results["arch"]
