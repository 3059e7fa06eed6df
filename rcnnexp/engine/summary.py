"""Model summaries for ``rcnnexp info`` and results.json: parameters and FLOPs."""

from __future__ import annotations

from math import prod
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula

from rcnnexp.data.base import DataSpec


def cudnn_rnn_flops(input_shape: Any, weight_shapes: Any, *args: Any, out_shape: Any = None,
                    **kwargs: Any) -> int:
    """FLOPs of ``aten._cudnn_rnn`` (any RNN/LSTM/GRU run by cuDNN), which FlopCounterMode
    does not count: every weight matrix multiplies every step of every sequence, 2 FLOPs a
    multiply-add (what the counter finds in the per-step matrix products of the CPU path).
    Elementwise work (biases, gates, activations) is not counted, as on CPU."""
    steps = prod(input_shape[:-1])  # (T, B) or (B, T); packed: (sum of batch sizes,)
    return sum(2 * steps * prod(w) for w in weight_shapes if len(w) == 2)


if hasattr(torch.ops.aten, "_cudnn_rnn") and torch.ops.aten._cudnn_rnn not in flop_registry:
    register_flop_formula(torch.ops.aten._cudnn_rnn)(cudnn_rnn_flops)


def count_flops(model: torch.nn.Module, spec: DataSpec) -> int:
    """Forward FLOPs for one image (a multiply-add counts 2), by ``torch.utils.flop_counter``.

    Counted in eval mode on a zero image of the dataset's shape, on the model's device.
    """
    device = next(model.parameters()).device
    x = torch.zeros(1, spec.in_channels, *spec.image_size, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def layer_table(model: torch.nn.Module, spec: DataSpec) -> list[tuple[str, str, str, int]]:
    """(name, type, output shape, parameters) per layer, in the order forward runs them.

    A layer is a module without children, or a block that a paper names (a module with
    ``summary_block = True``, such as an RCL), shown whole with all its parameters.
    """
    rows: list[tuple[str, str, str, int]] = []
    hooks = []

    def add_hook(name: str, module: torch.nn.Module) -> None:
        def hook(mod: torch.nn.Module, _inp: object, out: object) -> None:
            shape = str(tuple(out.shape[1:])) if isinstance(out, torch.Tensor) else "-"
            rows.append((name, type(mod).__name__, shape,
                         sum(p.numel() for p in mod.parameters())))
        hooks.append(module.register_forward_hook(hook))

    def walk(prefix: str, module: torch.nn.Module) -> None:
        for name, child in module.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if getattr(child, "summary_block", False) or not any(True for _ in child.children()):
                add_hook(full, child)
            else:
                walk(full, child)

    walk("", model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, spec.in_channels, *spec.image_size, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return rows
