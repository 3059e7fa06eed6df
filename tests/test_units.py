"""What the pixel units do to the papers' constants.

RCNN's LRN (alpha 0.001) divides a unit by ``(1 + alpha/N sum f^2)^0.75``: in [0, 1] units,
which the MNIST recipe feeds (a search chose them), that divisor is 1.000 and the layer does
nearly nothing; in Caffe's 0..255 it divides. Caffe's initialisation of AlexNet and C-RNN
(std 0.01, biases 0.1) leaves the logits almost independent of [0, 1] inputs, hence the
C-RNN recipes' 0..255. docs/models.md ("Pixel units") has the measurements on real MNIST.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import compose_config
from tiny_data import TINY_OVERRIDES, write_imagenet_folders, write_mnist_digits

from rcnnexp.engine.build import build_data, build_model
from rcnnexp.models.layers.rcl import RCL


def first_test_images(overrides: list[str], count: int = 128) -> tuple[object, torch.Tensor]:
    cfg = compose_config([*overrides, "dataset.download=false", "dataset.views=center"])
    data = build_data(cfg.dataset)
    data.setup(torch.device("cpu"))
    x, _ = next(iter(data.eval_batches("test", count)))
    return cfg, x[:, 0]  # the first view


def mean_lrn_divisors(overrides: list[str]) -> list[float]:
    """Per RCL of the preset's model at initialisation: its LRN divisor averaged over every
    unit, step and image, computed from the LRN's input as nn.LocalResponseNorm does."""
    cfg, x = first_test_images(overrides)
    torch.manual_seed(0)
    model = build_model(cfg.model, build_data(cfg.dataset).spec).eval()
    found: dict[str, list[torch.Tensor]] = {}
    for name, rcl in model.named_modules():
        if isinstance(rcl, RCL):
            lrn = rcl.norm

            def hook(mod, inputs, _out, name=name):
                sq = F.pad(inputs[0].square().unsqueeze(1),
                           (0, 0, 0, 0, mod.size // 2, (mod.size - 1) // 2))
                window = F.avg_pool3d(sq, (mod.size, 1, 1), stride=1).squeeze(1)
                found.setdefault(name, []).append((mod.k + mod.alpha * window) ** mod.beta)

            lrn.register_forward_hook(hook)
    with torch.no_grad():
        model(x)
    return [torch.cat([v.flatten() for v in found[n]]).mean().item() for n in sorted(found)]


@pytest.fixture(scope="module")
def digits_as_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mnist")
    write_mnist_digits(root)
    return root


@pytest.mark.parametrize("preset", ["rcnn/t4_rcnn32", "rcnn/t4_rcnn96"])
def test_rcnns_lrn_divides_in_caffes_units_and_not_in_the_recipes(digits_as_mnist: Path,
                                                                  preset: str) -> None:
    row = [f"experiment={preset}", f"dataset.root={digits_as_mnist}"]
    caffe = mean_lrn_divisors([*row, "dataset.scale=255"])
    assert caffe[0] > 1.5 and min(caffe) > 1.01, caffe
    recipe = mean_lrn_divisors(row)
    assert max(recipe) < 1.005, recipe  # [0, 1] pixels: the LRN is nearly an identity


def test_under_the_crnn_recipe_alexnets_logits_follow_the_input(tmp_path: Path) -> None:
    write_imagenet_folders(tmp_path)
    row = ["experiment=crnn/t1_alexnet_10views", f"dataset.root={tmp_path}",
           *TINY_OVERRIDES["imagenet"]]
    spread = {}
    for units in ("recipe", "dataset.scale=1"):
        cfg, x = first_test_images([*row] + ([units] if "=" in units else []))
        assert len(x) > 2
        torch.manual_seed(0)
        model = build_model(cfg.model, build_data(cfg.dataset).spec).eval()
        with torch.no_grad():
            spread[units] = model(x).std(dim=0).mean().item()  # across images, per class
    assert spread["recipe"] > 30 * spread["dataset.scale=1"], spread
