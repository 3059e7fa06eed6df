"""AlexNet (bvlc_alexnet) and C-RNN: exact parameter counts, the quad-directional RNN
against its equations, BPTT windows, the AlexNet degeneracy, input sizes, FLOPs, and
end-to-end training and fine-tuning through the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    CPU,
    TINY_ALEXNET,
    TINY_CRNN,
    assert_clean_error,
    compose_config,
    make_model,
    run_cli,
    train_run,
)
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from rcnnexp.engine.build import count_params
from rcnnexp.engine.checkpoint import save_checkpoint
from rcnnexp.engine.finetune import apply_finetune
from rcnnexp.engine.run import describe
from rcnnexp.engine.summary import cudnn_rnn_flops
from rcnnexp.models.alexnet import AlexNetFeatures
from rcnnexp.models.choices import Direction
from rcnnexp.models.layers.quad_rnn import QuadDirectionalRNN, SingleBiasRNN

DIRECTIONS = [d.value for d in Direction]


# -- parameter counts and shapes --------------------------------------------------------------
def test_alexnet_counts_bvlc_alexnet() -> None:
    with torch.device("meta"):
        model = make_model("alexnet", 3, 1000, (227, 227))
    assert count_params(model) == 60_965_224
    assert [m.groups for m in model.features if isinstance(m, nn.Conv2d)] == [1, 2, 1, 2, 2]


def test_crnn_adds_the_papers_rnn_weights_and_one_bias_per_direction() -> None:
    with torch.device("meta"):
        model = make_model("crnn", 3, 1000, (227, 227))
    rnn_weights = sum(p.numel() for n, p in model.rnn.named_parameters() if "weight" in n)
    rnn_biases = sum(p.numel() for n, p in model.rnn.named_parameters() if "bias" in n)
    assert (rnn_weights, rnn_biases) == (524_288, 4 * 256)
    assert count_params(model) == 60_965_224 + 524_288 + 1_024
    assert model.fc.fc6.in_features == 36 * 256  # H: 36 regions x 256


@pytest.mark.parametrize(("size", "grid"), [(227, 6), (224, 6), (99, 2), (67, 1), (55, 1)])
def test_conv5_grid(size: int, grid: int) -> None:
    assert AlexNetFeatures.grid_side(size) == grid
    features = AlexNetFeatures(1, channels=[4, 4, 4, 4, 4], groups=2)
    assert features(torch.zeros(1, 1, size, size)).shape[2:] == (grid, grid)


@pytest.mark.parametrize(("option", "name"), [("alexnet", "AlexNet"), ("crnn", "C-RNN")])
def test_too_small_inputs_are_refused_naming_the_smallest(option: str, name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} needs inputs of at least 55x55 \(conv5 "
                                         r"grid >= 1x1\), got 54x60$"):
        make_model(option, 3, 10, (54, 60), channels=[4, 4, 4, 4, 4], fc=8)
    model = make_model(option, 3, 10, (55, 70), channels=[4, 4, 4, 4, 4], fc=8)  # enough
    assert model(torch.randn(2, 3, 55, 70)).shape == (2, 10)


def test_crnn_parts_are_named_for_fine_tuning() -> None:
    model = make_model("crnn", 1, 10, (67, 67), channels=[4, 4, 4, 4, 4], hidden=4, fc=8)
    assert list(model.parts()) == ["features", "rnn", "fc", "classifier"]
    alexnet = make_model("alexnet", 1, 10, (67, 67), channels=[4] * 5, fc=8)
    assert list(alexnet.parts()) == ["features", "fc", "classifier"]


# -- the quad-directional RNN ---------------------------------------------------------------
SCANS = {  # the sequences the docs describe, as lists of (row, column)
    "left_to_right": lambda h, w: [(r, c) for r in range(h) for c in range(w)],
    "right_to_left": lambda h, w: [(r, c) for r in range(h) for c in range(w)][::-1],
    "top_to_bottom": lambda h, w: [(r, c) for c in range(w) for r in range(h)],
    "bottom_to_top": lambda h, w: [(r, c) for c in range(w) for r in range(h)][::-1],
}


def reference_quad_rnn(layer: QuadDirectionalRNN, x: torch.Tensor) -> torch.Tensor:
    """Eq. 3-7 one region at a time: h(s) = ReLU(W_ih x(s) + W_hh h(s-1) + b), summed."""
    n, _, height, width = x.shape
    total = torch.zeros(n, height, width, layer.hidden_size)
    for direction, rnn in layer.rnns.items():
        h = torch.zeros(n, layer.hidden_size)
        for r, c in SCANS[direction](height, width):
            h = F.relu(x[:, :, r, c] @ rnn.weight_ih_l0.T + rnn.bias_ih_l0
                       + h @ rnn.weight_hh_l0.T)
            total[:, r, c] += h
    return total.reshape(n, height * width, layer.hidden_size)


@pytest.mark.parametrize("directions", [list(DIRECTIONS), ["left_to_right"],
                                        ["right_to_left"], ["top_to_bottom"],
                                        ["bottom_to_top"], ["top_to_bottom", "bottom_to_top"]])
def test_quad_rnn_follows_its_equations(directions: list[str]) -> None:
    torch.manual_seed(0)
    layer = QuadDirectionalRNN(5, hidden_size=4, directions=directions, bptt="window",
                               dropout=0.0).eval()
    for rnn in layer.rnns.values():
        nn.init.normal_(rnn.bias_ih_l0, std=0.3)
    x = torch.randn(2, 5, 3, 4)
    torch.testing.assert_close(layer(x), reference_quad_rnn(layer, x))


def test_bptt_window_stops_gradients_at_window_boundaries() -> None:
    """Same forward; the output of row 1 depends on row 0's inputs, but window BPTT does
    not propagate into row 0 (the carried state is detached), sequence BPTT does."""
    torch.manual_seed(0)
    window = QuadDirectionalRNN(3, hidden_size=4, directions=["left_to_right"],
                                bptt="window", dropout=0.0)
    sequence = QuadDirectionalRNN(3, hidden_size=4, directions=["left_to_right"],
                                  bptt="sequence", dropout=0.0)
    sequence.load_state_dict(window.state_dict())
    x = torch.rand(2, 3, 3, 3)  # 3 rows of 3 regions
    grads = {}
    for name, layer in (("window", window), ("sequence", sequence)):
        xi = x.clone().requires_grad_()
        out = layer(xi)
        out[:, 3:6].sum().backward()  # the regions of row 1 (the second window)
        grads[name] = xi.grad
        torch.testing.assert_close(out, window(x))
    assert grads["window"][:, :, 0].abs().sum() == 0  # row 0: nothing
    assert grads["sequence"][:, :, 0].abs().sum() > 0
    torch.testing.assert_close(grads["window"][:, :, 1:], grads["sequence"][:, :, 1:])


def test_single_bias_rnn_is_nn_rnns_parameters_less_the_second_bias() -> None:
    """The names, shapes and seeded initial values of ``nn.RNN(nonlinearity="relu")``'s,
    without ``bias_hh_l0`` (the paper has one bias), so checkpoints and seeds from when each
    direction was an ``nn.RNN`` give the same model."""
    torch.manual_seed(0)
    rnn = SingleBiasRNN(3, 4)
    after_rnn = torch.rand(3)  # what the next layer's initialisation would draw
    torch.manual_seed(0)
    reference = nn.RNN(3, 4, nonlinearity="relu", batch_first=True)
    assert torch.equal(after_rnn, torch.rand(3))
    assert list(rnn.state_dict()) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0"]
    assert [n for n, _ in rnn.named_parameters()] == list(rnn.state_dict())
    for name, tensor in rnn.state_dict().items():
        assert torch.equal(tensor, reference.state_dict()[name]), name


def test_bad_directions_are_refused() -> None:
    """The message names the key and the value refused: the list, or its unknown entry."""
    for bad, named in (([], "[]"), (["left_to_right", "left_to_right"],
                                    "['left_to_right', 'left_to_right']"),
                       (["diagonal"], "'diagonal'")):
        with pytest.raises(ValueError, match=rf"^directions .*{re.escape(named)}"):
            QuadDirectionalRNN(3, hidden_size=4, directions=bad, bptt="window", dropout=0.0)


# -- the paper's degeneracy ---------------------------------------------------------------------
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_crnn_with_identity_rnn_is_alexnet(direction: str) -> None:
    """W_hh = 0, W_ih = I, b = 0, one direction: AlexNet, fc6's columns reordered from
    (channel, region) to (region, channel)."""
    torch.manual_seed(0)
    size, widths = (99, 99), [8, 8, 8, 8, 6]  # conv5: 6 x 2x2
    alex = make_model("alexnet", 3, 5, size, channels=widths, fc=16).eval()
    crnn = make_model("crnn", 3, 5, size, channels=widths, hidden=6, directions=[direction],
                      fc=16).eval()
    for p in alex.parameters():  # Caffe's small init would hide a wrong order in the biases
        nn.init.normal_(p, std=0.3)
    crnn.features.load_state_dict(alex.features.state_dict())
    crnn.classifier.load_state_dict(alex.classifier.state_dict())
    rnn = crnn.rnn.rnns[direction]
    w6 = alex.fc.fc6.weight.detach()  # [16, channel * 4 + region]
    with torch.no_grad():
        nn.init.eye_(rnn.weight_ih_l0)
        rnn.weight_hh_l0.zero_()
        rnn.bias_ih_l0.zero_()
        crnn.fc.load_state_dict(alex.fc.state_dict())
        crnn.fc.fc6.weight.copy_(w6.view(16, 6, 4).transpose(1, 2).reshape(16, 24))
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected = alex(x)
        torch.testing.assert_close(crnn(x), expected)
        crnn.fc.fc6.weight.copy_(w6)  # without the reordering it is another function
        assert not torch.allclose(crnn(x), expected, atol=1e-3)


# -- FLOPs ------------------------------------------------------------------------------------
def test_info_counts_the_rnns_flops() -> None:
    """C-RNN - AlexNet = the RNN's matrix products (fc6 has as many inputs when hidden equals
    conv5's channels): 2 x directions x regions x (C x hidden + hidden x hidden)."""
    common = ["model.channels=[8,8,8,8,8]", "model.fc=16", "dataset.image_size=99"]
    _, alex = describe(compose_config(["model=alexnet", *common]))
    for dirs, bptt in (("[left_to_right]", "window"), ("[top_to_bottom,bottom_to_top]",
                                                       "sequence")):
        _, crnn = describe(compose_config(["model=crnn", *common, "model.hidden=8",
                                           f"model.directions={dirs}", f"model.bptt={bptt}"]))
        k = dirs.count(",") + 1
        assert crnn["flops"] - alex["flops"] == 2 * k * 4 * (8 * 8 + 8 * 8)
        assert crnn["params"] - alex["params"] == k * (2 * 64 + 8)
        assert crnn["parts"] == ["features", "rnn", "fc", "classifier"]


@pytest.mark.parametrize(("kind", "kwargs"), [("RNN", {"nonlinearity": "relu"}), ("RNN", {}),
                                              ("GRU", {})])
def test_cudnn_rnn_flop_formula_matches_the_cpu_count(kind: str, kwargs: dict) -> None:
    """cuDNN's fused RNN op gets the count FlopCounterMode finds on CPU's matrix products
    (CPU's LSTM is one fused op that the counter does not count at all)."""
    assert flop_registry[torch.ops.aten._cudnn_rnn] is not None
    rnn = getattr(nn, kind)(6, 5, num_layers=2, bidirectional=True, batch_first=True,
                            **kwargs)
    x = torch.randn(3, 7, 6)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        rnn(x)
    weights = [tuple(p.shape) for p in rnn._flat_weights]
    assert cudnn_rnn_flops((3, 7, 6), weights) == counter.get_total_flops()


# -- end to end through the CLI ------------------------------------------------------------------
RUN = ("dataset.image_size=55", "trainer.epochs=1", "trainer.batch_size=256",
       "trainer.progress=false", CPU)
TINY = (*TINY_ALEXNET, *RUN)
CRNN_TINY = ("model=crnn", *TINY_CRNN, *RUN)


@pytest.fixture(scope="module")
def crnn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("crnn") / "run"
    results = train_run(run_dir, *CRNN_TINY)
    assert results["arch"] == "C-RNN4" and results["test_top1"] is not None
    return run_dir


def test_alexnet_trains_end_to_end(tmp_path: Path) -> None:
    results = train_run(tmp_path / "run", "model=alexnet", *TINY)
    assert results["arch"] == "AlexNet" and results["test_top1"] is not None


def test_fine_tuning_trains_only_the_rnn_and_the_classifier(crnn_run: Path,
                                                            tmp_path: Path) -> None:
    """MIT Indoor's protocol: every frozen tensor is bit-identical after training."""
    source = crnn_run / "checkpoints" / "last.pt"
    train_run(tmp_path / "run", *CRNN_TINY, f"finetune.checkpoint={source}",
          "finetune.trainable=[rnn,classifier]")
    before = torch.load(source, weights_only=True)["model"]
    after = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert before.keys() == after.keys()
    frozen = [k for k in before if k.startswith(("features.", "fc."))]
    trained = [k for k in before if k.startswith(("rnn.", "classifier."))]
    assert len(frozen) == 14 and len(trained) == 14
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert all(not torch.equal(before[k], after[k]) for k in trained)


def test_fine_tuning_from_another_architecture_is_a_clean_error(crnn_run: Path,
                                                                tmp_path: Path) -> None:
    proc = run_cli("train", "model=alexnet", *TINY,
                   f"finetune.checkpoint={crnn_run / 'checkpoints' / 'last.pt'}",
                   f"hydra.run.dir={tmp_path / 'run'}")
    assert_clean_error(proc, "holds the weights of another model", "unexpected rnn.")


def test_fine_tuning_replaces_the_classifier_for_the_new_classes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    kw = {"channels": [4, 4, 4, 4, 4], "hidden": 4, "fc": 8}
    source = make_model("crnn", 3, 1000, (67, 67), **kw)
    save_checkpoint(tmp_path / "src.pt", {"model": source.state_dict()})
    model = make_model("crnn", 3, 67, (67, 67), **kw)
    apply_finetune(model, str(tmp_path / "src.pt"), ["rnn", "classifier"])
    assert model.classifier.out_features == 67
    for name, tensor in source.state_dict().items():
        if not name.startswith("classifier."):
            assert torch.equal(model.state_dict()[name], tensor), name
    grads = {name: part.weight.requires_grad if hasattr(part, "weight") else None
             for name, part in (("classifier", model.classifier), ("fc", model.fc.fc6),
                                ("features", model.features.conv1))}
    assert grads == {"classifier": True, "fc": False, "features": False}
    assert all(p.requires_grad for p in model.rnn.parameters())


def test_bad_crnn_settings_are_clean_errors(tmp_path: Path) -> None:
    assert_clean_error(run_cli("info", "model=crnn"), "C-RNN", "55x55", "got 8x8")
    assert_clean_error(run_cli("train", *CRNN_TINY, "model.directions=[]",
                               f"hydra.run.dir={tmp_path}"),
                       "model.directions", "left_to_right")
