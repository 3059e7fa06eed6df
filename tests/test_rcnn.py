"""RCL and RCNN: shapes, exact parameter counts (REFERENCE §1), the feed-forward conv once."""

from __future__ import annotations

import pytest
import torch
from conftest import make_model

from rcnnexp.engine.build import count_params
from rcnnexp.models.layers.rcl import RCL


@pytest.mark.parametrize(("K", "channels", "variant", "expected"), [
    (96, 3, "rcnn", 672_202),
    (128, 3, "rcnn", 1_191_178),
    (160, 3, "rcnn", 1_857_610),
    (32, 1, "rcnn", 75_018),
    (64, 1, "rcnn", 297_482),
    (96, 1, "rcnn", 667_402),
    (128, 3, "wcnn", 601_354),
    (96, 3, "rcnn_recursive", 672_202),
])
def test_parameter_counts_match_the_paper(K: int, channels: int, variant: str,
                                          expected: int) -> None:
    model = make_model("rcnn", channels, 10, (32, 32), K=K, variant=variant)
    assert count_params(model) == expected


@pytest.mark.parametrize(("size", "channels"), [((32, 32), 3), ((24, 24), 3), ((28, 28), 1),
                                                ((8, 8), 1), ((13, 17), 2)])
def test_rcnn_output_shape(size: tuple[int, int], channels: int) -> None:
    model = make_model("rcnn", channels, 7, size, K=16)
    assert model(torch.randn(3, channels, *size)).shape == (3, 7)


def test_feedforward_convolution_runs_once_per_forward() -> None:
    layer = RCL(8, steps=3, lrn=True, lrn_alpha=1e-3, recursive=False)
    calls = {"feedforward": 0, "recurrent": 0}
    layer.feedforward.register_forward_hook(lambda *_: calls.__setitem__(
        "feedforward", calls["feedforward"] + 1))
    layer.recurrent.register_forward_hook(lambda *_: calls.__setitem__(
        "recurrent", calls["recurrent"] + 1))
    layer(torch.randn(2, 8, 6, 6))
    assert calls == {"feedforward": 1, "recurrent": 3}


def test_rcl_matches_the_papers_equations() -> None:
    """x(0) = LRN(ReLU(w_f*u + b)); x(t) = LRN(ReLU(w_f*u + w_r*x(t-1) + b))."""
    torch.manual_seed(0)
    layer = RCL(16, steps=2, lrn=True, lrn_alpha=1e-3, recursive=False)
    u = torch.randn(2, 16, 5, 5)
    f = torch.nn.functional
    lrn = torch.nn.LocalResponseNorm(16 // 8 + 1, alpha=1e-3, beta=0.75, k=1.0)
    ff = f.conv2d(u, layer.feedforward.weight, layer.feedforward.bias, padding=1)
    x = lrn(f.relu(ff))
    for _ in range(2):
        x = lrn(f.relu(ff + f.conv2d(x, layer.recurrent.weight, padding=1)))
    torch.testing.assert_close(layer(u), x)


def test_recursive_rcl_drops_the_feedforward_input_after_step_zero() -> None:
    torch.manual_seed(0)
    layer = RCL(8, steps=2, lrn=False, lrn_alpha=1e-3, recursive=True)
    u = torch.randn(1, 8, 4, 4)
    f = torch.nn.functional
    b = layer.feedforward.bias.view(1, -1, 1, 1)
    x = f.relu(f.conv2d(u, layer.feedforward.weight, layer.feedforward.bias, padding=1))
    for _ in range(2):
        x = f.relu(f.conv2d(x, layer.recurrent.weight, padding=1) + b)
    torch.testing.assert_close(layer(u), x)


def test_t_steps_change_depth_not_parameters() -> None:
    counts = {count_params(make_model("rcnn", 3, 10, (32, 32), K=96, T=t)) for t in (1, 2, 3)}
    assert counts == {672_202}


def test_wcnn_has_no_recurrent_weights() -> None:
    model = make_model("rcnn", 3, 10, (32, 32), K=16, variant="wcnn")
    rcls = [m for m in model.modules() if isinstance(m, RCL)]
    assert len(rcls) == 4 and all(m.recurrent is None for m in rcls)


def test_lrn_can_be_switched_off() -> None:
    model = make_model("rcnn", 3, 10, (32, 32), K=16, lrn=False)
    assert not any(isinstance(m, torch.nn.LocalResponseNorm) for m in model.modules())
    conv1_lrn = make_model("rcnn", 3, 10, (32, 32), K=16, conv1_lrn=True)
    assert any(isinstance(m, torch.nn.LocalResponseNorm) for m in conv1_lrn.features.children())


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^variant .*'resnet'"):
        make_model("rcnn", 3, 10, (32, 32), variant="resnet")


def test_every_lrn_of_rcnn_takes_the_alpha_the_config_gives() -> None:
    """model.lrn_alpha: the paper's 0.001 by default, for Caffe's pixel units; another for
    other units (docs/models.md, Pixel units)."""
    default = make_model("rcnn", 1, 10, (28, 28), K=16, conv1_lrn=True)
    scaled = make_model("rcnn", 1, 10, (28, 28), K=16, conv1_lrn=True, lrn_alpha=65.0)
    for model, alpha in ((default, 1e-3), (scaled, 65.0)):
        norms = [m for m in model.modules() if isinstance(m, torch.nn.LocalResponseNorm)]
        assert len(norms) == 5 and {m.alpha for m in norms} == {alpha}  # conv1 + 4 RCLs
