"""The models as torch.compile and autocast need them: LRN in the autocast dtype, C-RNN's
recurrence as matrix products (no graph break, the asked dtype, nn.RNN's values), graph
breaks counted per family, and the training benchmark's smoke run."""

from __future__ import annotations

import collections
import functools
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import REPO, cli_env, compose_config, make_model
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from rcnnexp.engine.build import build_data, build_model
from rcnnexp.engine.summary import count_flops
from rcnnexp.models.layers.lrn import LocalResponseNorm
from rcnnexp.models.layers.quad_rnn import QuadDirectionalRNN

BF16_ROUNDING = 2.0**-8  # bf16's unit roundoff (8 significant bits)
DIRECTIONS = ["left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top"]
FAMILIES = {  # tiny members of each family, the shapes of their datasets
    "rcnn": ["model=rcnn", "model.K=8", "dataset=cifar10"],
    "recnet": ["model=recnet", "model.e=1", "model.d=[2,2,2]", "model.S=[2,4,4]",
               "dataset=cifar100"],
    "crnn": ["model=crnn", "model.channels=[8,8,8,8,8]", "model.fc=16", "model.hidden=8",
             "dataset=mitindoor", "dataset.crop=99"],
}


def lrn_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every LRN's output (one per call) in one forward pass of ``model`` under CPU bf16
    autocast."""
    outputs: list[torch.Tensor] = []
    norms = [m for m in model.modules() if isinstance(m, nn.LocalResponseNorm)]
    hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for m in norms]
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(outputs) >= len(norms) > 0
    return outputs


# -- LRN ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("option", "shape", "changes"), [
    ("rcnn", (3, 32, 32), {"K": 16, "conv1_lrn": True}),
    ("alexnet", (3, 67, 67), {"channels": [8, 8, 8, 8, 8], "fc": 16}),
])
def test_every_lrn_returns_bf16_under_bf16_autocast(option: str, shape: tuple[int, ...],
                                                   changes: dict) -> None:
    """nn.LocalResponseNorm returns fp32 under autocast (pow on CUDA, avg_pool3d on CPU are
    on autocast's fp32 list), a cast back before the next convolution."""
    torch.manual_seed(0)
    model = make_model(option, shape[0], 10, shape[1:], **changes).eval()
    dtypes = {out.dtype for out in lrn_outputs(model, torch.randn(2, *shape))}
    assert dtypes == {torch.bfloat16}


@pytest.mark.parametrize("scale", [1.0, 100.0, 1000.0])
def test_bf16_lrn_stays_within_a_few_bf16_roundings_of_fp64(scale: float) -> None:
    """Nothing cancels and bf16 has fp32's range: the output within 4 roundings of the exact
    value (relative, every unit), the input gradient within 2 (relative norm)."""
    torch.manual_seed(0)
    lrn = LocalResponseNorm(13, alpha=1e-3, beta=0.75, k=1.0)  # RCNN-96's
    x = (torch.randn(4, 96, 8, 8) * scale).relu().bfloat16()
    grad = torch.randn(4, 96, 8, 8).bfloat16()
    exact_in = x.double().requires_grad_()
    exact = lrn(exact_in)
    exact.backward(grad.double())
    low_in = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = lrn(low_in)
    low.backward(grad)
    assert low.dtype == torch.bfloat16 and low_in.grad is not None
    assert exact_in.grad is not None
    mask = exact > 0
    out_error = ((low.double() - exact).abs()[mask] / exact[mask]).max()
    grad_error = (low_in.grad.double() - exact_in.grad).norm() / exact_in.grad.norm()
    assert out_error <= 4 * BF16_ROUNDING
    assert grad_error <= 2 * BF16_ROUNDING


def test_fp16_lrn_normalises_activations_whose_square_overflows_fp16() -> None:
    """|x| > 255 squares past fp16's 65504: the divisor is taken in fp32, not inf."""
    lrn = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)  # AlexNet's
    x = torch.full((1, 8, 2, 2), 300.0)
    with torch.autocast("cpu", dtype=torch.float16):
        got = lrn(x.half())
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.float(), lrn(x), rtol=1e-3, atol=0)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_fp32_lrn_and_its_gradient_equal_nn_local_response_norm_in_fp64(
        memory_format: torch.memory_format) -> None:
    """The window sum is a matrix product and the backward pass hand-written: both agree
    with autograd through ``F.local_response_norm`` (in fp64) to fp32 rounding, for odd and
    even windows, and the output keeps the input's memory format."""
    torch.manual_seed(0)
    x = (torch.randn(3, 24, 5, 7) * 10).relu().contiguous(memory_format=memory_format)
    grad = torch.randn(3, 24, 5, 7)
    for size, alpha in ((24 // 8 + 1, 1e-3), (5, 1e-4), (2, 1.0)):
        ours_in = x.clone().requires_grad_()
        ours = LocalResponseNorm(size, alpha=alpha, beta=0.75, k=1.0)(ours_in)
        ours.backward(grad)
        exact_in = x.double().requires_grad_()
        exact = nn.LocalResponseNorm(size, alpha=alpha, beta=0.75, k=1.0)(exact_in)
        exact.backward(grad.double())
        assert ours.is_contiguous(memory_format=memory_format)
        torch.testing.assert_close(ours.double(), exact, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(ours_in.grad.double(), exact_in.grad, rtol=1e-5, atol=1e-6)


# -- C-RNN's quad-directional RNN ---------------------------------------------------------------
def nn_rnn_reference(layer: QuadDirectionalRNN,
                     x: torch.Tensor) -> tuple[torch.Tensor, dict[str, nn.RNN]]:
    """The layer as it was: each direction an ``nn.RNN`` holding a copy of its weights (and a
    zero second bias), run window by window with the carried state detached for window
    BPTT. Returns the output and the ``nn.RNN`` per direction (for their gradients)."""
    _, _, height, width = x.shape
    total = torch.zeros(())
    rnns = {}
    for direction, params in layer.rnns.items():
        rnn = rnns[direction] = nn.RNN(params.weight_ih_l0.shape[1], layer.hidden_size,
                                       nonlinearity="relu", batch_first=True)
        with torch.no_grad():
            for name, tensor in params.state_dict().items():
                getattr(rnn, name).copy_(tensor)
            rnn.bias_hh_l0.zero_()
        seq, window = layer.scan(x, direction)
        if layer.bptt.value == "sequence":
            out = rnn(seq)[0]
        else:
            outputs, state = [], None
            for start in range(0, seq.shape[1], window):
                step_out, last = rnn(seq[:, start:start + window], state)
                outputs.append(step_out)
                state = last.detach()
            out = torch.cat(outputs, dim=1)
        total = total + layer.unscan(out, direction, height, width)
    return total, rnns


@pytest.mark.parametrize("bptt", ["window", "sequence"])
@pytest.mark.parametrize("directions", [DIRECTIONS, ["left_to_right", "top_to_bottom"],
                                        ["bottom_to_top"]])
def test_quad_rnn_equals_nn_rnn_in_values_and_gradients(bptt: str,
                                                        directions: list[str]) -> None:
    """A 3x4 grid: row windows of 4, column windows of 3, so the directions' windows start
    at different steps."""
    torch.manual_seed(0)
    layer = QuadDirectionalRNN(5, hidden_size=6, directions=directions, bptt=bptt,
                               dropout=0.0)
    for params in layer.rnns.values():
        nn.init.normal_(params.bias_ih_l0, std=0.3)
    x = torch.randn(2, 5, 3, 4)
    weights = torch.randn(2, 12, 6)  # a loss that weighs every output differently
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = layer(x_ours)
    reference, rnns = nn_rnn_reference(layer, x_ref)
    (ours * weights).sum().backward()
    (reference * weights).sum().backward()
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(x_ours.grad, x_ref.grad)
    for direction, params in layer.rnns.items():
        for name, param in params.named_parameters():
            torch.testing.assert_close(param.grad, getattr(rnns[direction], name).grad)


class OpLog(TorchDispatchMode):
    """The aten ops a region dispatches, with the dtypes of their tensor arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[tuple[str, tuple[torch.dtype, ...]]] = (
            collections.Counter())

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        dtypes = tuple(a.dtype for a in args if isinstance(a, torch.Tensor))
        self.ops[(func.overloadpacket.__name__, dtypes)] += 1
        return func(*args, **(kwargs or {}))


def test_the_rnn_runs_its_matrix_products_in_the_autocast_dtype() -> None:
    """bf16 asked, bf16 run: no fused RNN op (cuDNN's autocast wrapper takes fp16), and the
    weights cast once per forward pass, not once per region."""
    torch.manual_seed(0)
    layer = QuadDirectionalRNN(8, hidden_size=8, directions=DIRECTIONS, bptt="window",
                               dropout=0.0)
    casts = []
    for grid in ((2, 3), (4, 6)):
        with torch.autocast("cpu", dtype=torch.bfloat16), OpLog() as log:
            out = layer(torch.randn(2, 8, *grid))
        assert out.dtype == torch.bfloat16
        products = {dtypes for (name, dtypes) in log.ops
                    if name in {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear"}}
        assert products and all(set(dtypes) == {torch.bfloat16} for dtypes in products)
        assert not [name for (name, _) in log.ops if "rnn" in name]
        casts.append(sum(n for (name, _), n in log.ops.items() if name == "_to_copy"))
    assert casts[0] == casts[1]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_rnn_runs_in_the_asked_dtype_on_cuda(dtype: torch.dtype) -> None:
    """Before, nn.RNN under CUDA autocast went to cuDNN in fp16 whatever was asked."""
    layer = QuadDirectionalRNN(16, hidden_size=16, directions=DIRECTIONS, bptt="window",
                               dropout=0.0).cuda()
    with torch.autocast("cuda", dtype=dtype):
        assert layer(torch.randn(2, 16, 3, 3, device="cuda")).dtype == dtype


@pytest.mark.gpu
@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_bf16_lrn_on_cuda_stays_within_four_bf16_roundings(scale: float) -> None:
    lrn = LocalResponseNorm(13, alpha=1e-3, beta=0.75, k=1.0)
    x = (torch.randn(4, 96, 8, 8, device="cuda") * scale).relu().bfloat16()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        low = lrn(x)
    exact = lrn(x.double())
    mask = exact > 0
    assert low.dtype == torch.bfloat16
    assert ((low.double() - exact).abs()[mask] / exact[mask]).max() <= 4 * BF16_ROUNDING


# -- graph breaks ------------------------------------------------------------------------------
@pytest.fixture
def fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.usefixtures("fresh_dynamo")
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_compiles_without_graph_breaks(family: str) -> None:
    """Dynamo traces the whole forward as one graph (explain runs no backend compiler)."""
    cfg = compose_config(FAMILIES[family])
    spec = build_data(cfg.dataset).spec
    torch.manual_seed(0)
    model = build_model(cfg.model, spec)
    explained = torch._dynamo.explain(model)(torch.randn(2, spec.in_channels, *spec.image_size))
    reasons = [reason.reason.splitlines()[0] for reason in explained.break_reasons]
    assert (explained.graph_break_count, explained.graph_count, reasons) == (0, 1, [])


@pytest.mark.slow
@pytest.mark.usefixtures("fresh_dynamo")
def test_compiled_crnn_equals_eager_in_logits_and_gradients() -> None:
    """Inductor on CPU (minutes here: a C++ build): the recurrence compiles to the same
    function, forward and backward, window BPTT on a 2x2 grid."""
    cfg = compose_config(FAMILIES["crnn"] + ["model.dropout=0.0"])
    spec = build_data(cfg.dataset).spec
    torch.manual_seed(0)
    model = build_model(cfg.model, spec)
    x = torch.randn(2, spec.in_channels, *spec.image_size)
    results = []
    for run in (model, torch.compile(model)):
        model.zero_grad()
        logits = run(x)
        logits.square().sum().backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    (eager, eager_grads), (compiled, compiled_grads) = results
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    for got, expected in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-6)


# -- scripts/bench_train.py ------------------------------------------------------------------------
@functools.cache
def bench_module() -> Any:
    """scripts/bench_train.py imported once (for its main in this process)."""
    spec = importlib.util.spec_from_file_location("bench_train",
                                                  REPO / "scripts" / "bench_train.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules["bench_train"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_train_prints_a_json_line_per_variant_and_their_table(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A tiny RCNN on the RCNN-96 24x24 preset, eager, a step per layout: the fields the
    issue's benchmark reports, and the same table again from the saved lines."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_train.py"), "--family", "rcnn96-24",
         "--device", "cpu", "--precision", "fp32", "--channels-last", "off", "on", "--batch",
         "2", "--steps", "1", "--rounds", "1", "--warmup", "1", "--profile-steps", "1",
         "--markdown", "model.K=8"],
        env=cli_env(), text=True, capture_output=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    rows = [json.loads(line) for line in lines if line.startswith("{")]
    assert [(r["family"], r["compile"], r["precision"], r["channels_last"]) for r in rows] == [
        ("rcnn96-24", "off", "fp32", False), ("rcnn96-24", "off", "fp32", True)]
    cfg = compose_config(["experiment=rcnn/t2_aug_rcnn96", "model.K=8"])
    spec = build_data(cfg.dataset).spec
    flops = count_flops(build_model(cfg.model, spec), spec)
    for row in rows:
        assert (row["model"], row["input"], row["batch"], row["device"]) == (
            "RCNN-8 (T=3)", [3, 24, 24], 2, "cpu")
        assert row["images_per_s"] > 0 and row["forward_flops_per_image"] == flops
        assert row["train_flops_per_s"] == pytest.approx(3 * flops * row["images_per_s"],
                                                         rel=1e-2)
        assert (row["launch_unit"], row["device_kernels_per_step"], row["peak_fraction"]) == (
            "cpu_ops", None, None)
        assert row["launches_per_step"] > 100  # an eager step: hundreds of ops
        assert (row["row_epochs"], row["row_stages"], row["row_images_per_epoch"]) == (
            400, 2, 50_000)  # the preset's cap, tune + retrain, CIFAR-10's training images
        assert row["row_wall_s"] == pytest.approx(2 * 400 * 50_000 / row["images_per_s"],
                                                  rel=1e-2)
    table = "\n".join(lines[len(rows):])
    assert "| rcnn96-24 | off | fp32 | on | 2 |" in table
    saved = tmp_path / "rows.jsonl"
    saved.write_text("\n".join(lines[:len(rows)]) + "\n")
    assert bench_module().main(["--table", str(saved)]) == 0
    assert capsys.readouterr().out.strip() == table.strip()


@pytest.mark.parametrize(("args", "named"), [(["--steps", "0"], "--steps"),
                                             (["--family", "resnet"], "resnet"),
                                             (["--table", "/nonexistent.jsonl"], "--table")])
def test_bench_train_refuses_bad_arguments_in_one_line(
        args: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = bench_module().main(args)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and named in err, err


@pytest.mark.gpu
def test_bench_train_counts_cuda_launches_and_kernels_on_a_gpu() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_train.py"), "--family", "rcnn96-32",
         "--device", "cuda", "--precision", "bf16", "--batch", "8", "--steps", "2",
         "--rounds", "1", "--warmup", "2", "--profile-steps", "1", "model.K=16"],
        env=cli_env(), text=True, capture_output=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads(proc.stdout.splitlines()[0])
    assert (row["device"], row["precision"], row["launch_unit"]) == (
        "cuda:0", "bf16", "cuda_launch_calls")
    assert row["launches_per_step"] > 50 and row["device_kernels_per_step"] > 50
    known = any(name in row["device_name"] for name in bench_module().PEAK_TFLOPS)
    assert (row["peak_fraction"] is not None) == known


def test_bench_gpu_sh_is_valid_bash() -> None:
    proc = subprocess.run(["bash", "-n", str(REPO / "scripts" / "bench_gpu.sh")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
