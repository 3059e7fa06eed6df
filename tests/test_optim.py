"""The optimizer's param groups: biases with a rate and a weight decay of their own
(``optim.bias_lr_factor``, ``optim.bias_weight_decay``), as Caffe's bvlc_alexnet trains them
and the C-RNN recipes say; the defaults keep the one group every run had before."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import compose_config, make_model

from rcnnexp.config import validate
from rcnnexp.engine.build import build_optimizer, build_schedule, is_bias
from rcnnexp.errors import ConfigError

CAFFE_BIASES = ("optim.bias_lr_factor=2", "optim.bias_weight_decay=0")


def tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return make_model("recnet", 3, 10, [8, 8], e=1, S=[2, 2, 2], d=[2, 2, 2])


def trained(overrides: tuple[str, ...], steps: int = 4
            ) -> tuple[torch.nn.Module, torch.optim.Optimizer, list[float]]:
    """``steps`` SGD steps of :func:`tiny_net` under a cosine schedule; the rates it set."""
    model = tiny_net()
    cfg = compose_config(["schedule=cosine", "optim.lr=0.1", *overrides])
    optimizer = build_optimizer(cfg.optim, model)
    schedule = build_schedule(cfg.schedule, optimizer, steps, 2)
    torch.manual_seed(1)
    x, y = torch.randn(4, 3, 8, 8), torch.arange(4)
    rates = []
    for _ in range(steps):
        rates.append(schedule.step())
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model, optimizer, rates


def group_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    return [float(g["lr"]) for g in optimizer.param_groups]


def test_the_defaults_keep_one_group_that_trains_as_a_plain_sgd() -> None:
    model, optimizer, _ = trained(())
    assert len(optimizer.param_groups) == 1
    reference = tiny_net()
    plain = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    cfg = compose_config(["schedule=cosine", "optim.lr=0.1"])
    schedule = build_schedule(cfg.schedule, plain, 4, 2)
    torch.manual_seed(1)
    x, y = torch.randn(4, 3, 8, 8), torch.arange(4)
    for _ in range(4):
        schedule.step()
        plain.zero_grad()
        F.cross_entropy(reference(x), y).backward()
        plain.step()
    for a, b in zip(reference.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert optimizer.state_dict()["param_groups"][0]["params"] == \
        plain.state_dict()["param_groups"][0]["params"]


def test_biases_form_a_second_group_at_twice_the_rate_without_decay() -> None:
    model = tiny_net()
    optimizer = build_optimizer(compose_config(["optim.lr=0.1", *CAFFE_BIASES]).optim, model)
    rest, biases = optimizer.param_groups
    assert (rest["lr"], rest["weight_decay"]) == (0.1, 5e-4)
    assert (biases["lr"], biases["weight_decay"]) == (pytest.approx(0.2), 0.0)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in biases["params"]} == {
        n for n, p in model.named_parameters() if n.endswith("bias")}
    assert all(not names[id(p)].endswith("bias") for p in rest["params"])


def test_a_bias_is_a_vector_named_bias_and_a_batchnorms_scale_is_not() -> None:
    bn, conv = torch.nn.BatchNorm2d(4), torch.nn.Conv2d(1, 4, 3)
    assert is_bias("bn.bias", bn.bias) and is_bias("conv.bias", conv.bias)
    assert not is_bias("bn.weight", bn.weight) and not is_bias("conv.weight", conv.weight)


@pytest.mark.parametrize("fused", ["null", "true"])
def test_the_schedule_keeps_the_biases_factor_at_every_step(fused: str) -> None:
    _, optimizer, rates = trained((*CAFFE_BIASES, f"optim.fused={fused}"))
    rest, biases = group_lrs(optimizer)
    assert rest == pytest.approx(rates[-1]) and biases == pytest.approx(2 * rates[-1])
    assert rates[-1] < rates[0]  # the cosine has moved the rate


def test_a_bias_step_is_twice_the_rate_times_its_gradient_without_decay() -> None:
    """Plain SGD (no momentum): one step moves a bias by exactly -2 lr grad, and a weight by
    -lr (grad + decay * weight)."""
    model = tiny_net()
    cfg = compose_config(["optim.lr=0.1", "optim.momentum=0", "optim.weight_decay=0.01",
                          *CAFFE_BIASES])
    optimizer = build_optimizer(cfg.optim, model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    F.cross_entropy(model(torch.randn(4, 3, 8, 8)), torch.arange(4)).backward()
    optimizer.step()
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        decay = 0.0 if name.endswith("bias") else 0.01
        lr = 0.2 if name.endswith("bias") else 0.1
        expected = before[name] - lr * (p.grad + decay * before[name])
        torch.testing.assert_close(p.detach(), expected, msg=name)


def test_two_groups_survive_a_state_dict_round_trip_and_continue_identically() -> None:
    model, optimizer, _ = trained(CAFFE_BIASES, steps=2)
    state = optimizer.state_dict()
    assert len(state["param_groups"]) == 2
    copy = tiny_net()
    copy.load_state_dict(model.state_dict())
    cfg = compose_config(["schedule=cosine", "optim.lr=0.1", *CAFFE_BIASES])
    restored = build_optimizer(cfg.optim, copy)
    schedule = build_schedule(cfg.schedule, restored, 4, 2)
    restored.load_state_dict(state)
    schedule.load_state_dict({"iteration": 2})
    rate = schedule.step()
    assert group_lrs(restored) == pytest.approx([rate, 2 * rate])
    for a, b in zip(optimizer.state_dict()["state"].values(),
                    restored.state_dict()["state"].values(), strict=True):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])


def test_the_crnn_recipes_train_biases_as_bvlc_alexnet_does() -> None:
    for recipe, dataset in (("crnn_imagenet", "imagenet"), ("crnn_finetune", "sun397")):
        optim = validate(compose_config([f"recipe={recipe}", "model=alexnet",
                                         f"dataset={dataset}"])).optim
        assert (optim.bias_lr_factor, optim.bias_weight_decay) == (2, 0), recipe


@pytest.mark.parametrize(("override", "message"), [
    ("optim.bias_lr_factor=0", "optim.bias_lr_factor must be positive, got 0"),
    ("optim.bias_weight_decay=-1", "optim.bias_weight_decay must be zero or more, got -1"),
])
def test_a_bias_rate_or_decay_out_of_range_is_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(compose_config([override]))
