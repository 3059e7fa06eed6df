"""Pixel units and the Caffe-era constants: what the inputs' scale does to a model at a glance.

    python scripts/measure_units.py lrn [--checkpoint PATH] [--images N] [OVERRIDE ...]
    python scripts/measure_units.py caffe-init [--images N] [OVERRIDE ...]

The papers' constants were set for Caffe's units, pixels 0..255 (minus the mean), where
``dataset.scale=1`` feeds [0, 1]. Each command prints one JSON object per measured model.

``lrn``: RCNN's local response normalisation (alpha 0.001, beta 0.75, N = K/8 + 1) divides
every unit by ``(1 + alpha/N * sum f^2)^beta``. For each RCL it reports that divisor over
every unit, step and test image (mean, 99th percentile, max): 1.0 means the LRN does
nothing. The model is the configured one at initialisation, or with ``--checkpoint`` the
weights of a run; the images are the first N test images of the configured dataset,
preprocessed as training preprocesses them (``dataset.normalize``, ``dataset.scale``).

``caffe-init``: AlexNet and C-RNN start from Caffe's Gaussians (std 0.01, fc6/fc7 0.005,
biases 0 or 0.1). For the first N test images of the configured dataset (grey images are
repeated to three channels and resized to 227x227 so that the ImageNet model sees them),
it reports relu1's standard deviation and how much the logits depend on the input: their
standard deviation across images (mean over classes), absolutely and as a fraction of
their root mean square.

The measurements in docs/models.md ("Pixel units") were made with:

    python scripts/measure_units.py lrn experiment=rcnn/t4_rcnn32 dataset.root=../shared/data \
        dataset.download=false dataset.scale=1     # and 255, and --checkpoint of a run
    python scripts/measure_units.py caffe-init dataset=mnist dataset.root=../shared/data \
        dataset.download=false dataset.normalize=pixel dataset.scale=1   # and 255
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch
import torch.nn.functional as F

from rcnnexp.cli import compose
from rcnnexp.config import register_configs
from rcnnexp.data.base import DataSpec
from rcnnexp.engine.build import build_data, build_model
from rcnnexp.engine.checkpoint import load_checkpoint, load_model_state
from rcnnexp.models.layers.rcl import RCL


def test_images(overrides: list[str], count: int) -> tuple[Any, torch.Tensor]:
    """The composed config and the first ``count`` test images, preprocessed as in training
    (one centre view)."""
    cfg = compose([*overrides, "dataset.views=center"])
    data = build_data(cfg.dataset)
    data.setup(torch.device("cpu"))
    x, _ = next(iter(data.eval_batches("test", count)))
    return cfg, x[:, 0]


def lrn_divisors(model: torch.nn.Module, x: torch.Tensor) -> dict[str, dict[str, float]]:
    """Per RCL: the LRN divisor of every unit at every step, summarised."""
    found: dict[str, list[torch.Tensor]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, RCL) and isinstance(module.norm, torch.nn.LocalResponseNorm):
            lrn = module.norm

            def hook(_mod: torch.nn.Module, inputs: tuple[torch.Tensor], _out: torch.Tensor,
                     name: str = name, lrn: torch.nn.LocalResponseNorm = lrn) -> None:
                # nn.LocalResponseNorm's divisor: (k + alpha * mean of f^2 over N maps)^beta
                sq = inputs[0].square().unsqueeze(1)
                sq = F.pad(sq, (0, 0, 0, 0, lrn.size // 2, (lrn.size - 1) // 2))
                mean = F.avg_pool3d(sq, (lrn.size, 1, 1), stride=1).squeeze(1)
                found.setdefault(name, []).append(
                    (lrn.k + lrn.alpha * mean).pow(lrn.beta).flatten())

            hooks.append(lrn.register_forward_hook(hook))
    model.eval()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    out = {}
    for name, values in found.items():
        v = torch.cat(values)
        out[name] = {"mean": v.mean().item(), "p99": v.quantile(0.99).item() if v.numel() < 2**24
                     else v[torch.randperm(v.numel())[:2**24]].quantile(0.99).item(),
                     "max": v.max().item()}
    return out


def caffe_init(model: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    """relu1's standard deviation and the logits' dependence on the input."""
    relu1: list[torch.Tensor] = []
    hook = model.features.relu1.register_forward_hook(
        lambda _m, _i, out: relu1.append(out.detach().clone()))
    model.eval()
    with torch.no_grad():
        logits = model(x)
    hook.remove()
    across_images = logits.std(dim=0).mean().item()
    rms = logits.square().mean().sqrt().item()
    return {"relu1_std": relu1[0].std().item(), "logit_std_across_images": across_images,
            "logit_rms": rms, "input_dependence": across_images / rms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["lrn", "caffe-init"])
    parser.add_argument("--checkpoint", help="lrn: measure a run's weights, not the init")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    register_configs()
    torch.manual_seed(0)
    cfg, x = test_images(args.overrides, args.images)
    setup = {"overrides": args.overrides, "images": len(x),
             "input_std": x.std().item(), "input_abs_max": x.abs().max().item()}
    if args.what == "lrn":
        model = build_model(cfg.model, build_data(cfg.dataset).spec)
        if args.checkpoint:
            load_model_state(model, load_checkpoint(args.checkpoint)["model"], args.checkpoint)
            setup["checkpoint"] = args.checkpoint
        print(json.dumps({**setup, "arch": model.arch, "lrn_divisor": lrn_divisors(model, x)}))
        return
    # the ImageNet models, on these images as 3x227x227
    x = F.interpolate(x, size=(227, 227), mode="bilinear", align_corners=False)
    x = x.expand(-1, 3, -1, -1).contiguous()
    for option in ("alexnet", "crnn"):  # as conf/model/OPTION.yaml builds them for ILSVRC
        torch.manual_seed(0)
        model = build_model(compose([f"model={option}"]).model, DataSpec(3, 1000, (227, 227)))
        print(json.dumps({**setup, "arch": model.arch, **caffe_init(model, x)}))


if __name__ == "__main__":
    main()
