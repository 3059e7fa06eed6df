"""CUDA checks (`make test-gpu`; skipped where CUDA is absent): the same models and data
path on the GPU, mixed precision through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import QUICK, compose_config, run_cli

from rcnnexp.engine.build import build_data, build_model

pytestmark = pytest.mark.gpu

FAMILIES = {
    "rcnn": ["model=rcnn", "model.K=16", "dataset=cifar10"],
    "recnet": ["model=recnet", "model.e=1", "model.d=[2,2,2]", "model.S=[2,4,4]",
               "dataset=cifar100"],
    "crnn": ["model=crnn", "model.channels=[16,32,32,32,32]", "model.fc=64", "model.hidden=16",
             "dataset=mitindoor", "dataset.crop=67"],
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_cuda_forward_equals_cpu(family: str) -> None:
    cfg = compose_config(FAMILIES[family])
    spec = build_data(cfg.dataset).spec
    torch.manual_seed(0)
    model = build_model(cfg.model, spec).eval()
    x = torch.randn(4, spec.in_channels, *spec.image_size)
    with torch.no_grad():
        expected = model(x)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        got = model.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_run_through_the_cli(tmp_path: Path, precision: str) -> None:
    run = tmp_path / "run"
    proc = run_cli("train", *QUICK, "trainer.device=cuda", f"trainer.precision={precision}",
                   f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["device"].startswith("cuda") and results["precision"] == precision
    assert 0.0 <= results["test_top1"] <= 100.0 and results["train_loss"] == results["train_loss"]
