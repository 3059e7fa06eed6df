"""How fast a run's kernels go: the backends' flags, channels_last and torch.compile.

:func:`configure_backends` sets the process-wide flags a run's ``trainer`` keys ask for
(deterministic algorithms, cuDNN autotuning, TF32), resolved for the device.
:func:`accelerate` returns the module the training step calls: the model itself, or the model
in channels_last and/or compiled. Either way the plain model keeps its parameters (the
training module shares them), so checkpoints hold the plain model's ``state_dict`` (no
``_orig_mod.`` prefix) and load into an eager or a compiled run alike. Evaluation calls the
plain model: its batch shapes (views, a smaller last batch) would recompile a compiled one,
and it is a small part of a run's time.
"""

from __future__ import annotations

import os

import torch

from rcnnexp.config.trainer import Compile, TrainerConfig, resolved_deterministic
from rcnnexp.errors import ConfigError

# the first torch whose compiled dropout draws eager's masks under Inductor's fallback_random
# (torch 2.11 draws others: a compiled run then neither matches an eager one nor resumes
# exactly; 2.14.1 does both, as tests/test_acceleration.py checks)
EXACT_COMPILED_DROPOUT = "2.14"


def compiled_dropout_is_exact() -> bool:
    """Whether this torch compiles dropout to draw what eager draws (read at each call, so
    that a test can stand in another version)."""
    return torch.torch_version.TorchVersion(torch.__version__) >= EXACT_COMPILED_DROPOUT


def check_compile(cfg: TrainerConfig, device_type: str) -> None:
    """Refuse a compiled run that asks to be deterministic on a torch that cannot keep that
    promise (:data:`EXACT_COMPILED_DROPOUT`), rather than train one that silently is not.

    Raises :class:`ConfigError` naming both keys, this torch and the ways out."""
    if cfg.compile == Compile.off or not resolved_deterministic(cfg.deterministic, device_type):
        return
    if compiled_dropout_is_exact():
        return
    asked = ("trainer.deterministic=true" if cfg.deterministic
             else f"trainer.deterministic=null (on for {device_type})")
    raise ConfigError(
        f"trainer.compile={cfg.compile.value} with {asked} needs torch >= "
        f"{EXACT_COMPILED_DROPOUT}: torch {torch.__version__} compiles dropout to other "
        "random numbers than eager's, so the run would neither match an eager one nor "
        f"resume exactly; use trainer.compile=off, trainer.deterministic=false, or torch >= "
        f"{EXACT_COMPILED_DROPOUT}")


def configure_backends(cfg: TrainerConfig, device: torch.device) -> None:
    """Deterministic algorithms or cuDNN autotuning, and TF32, as ``cfg`` asks on ``device``."""
    deterministic = resolved_deterministic(cfg.deterministic, device.type)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    # autotuning picks the fastest convolution for each shape, which may differ between runs
    torch.backends.cudnn.benchmark = not deterministic
    if deterministic:
        # cuBLAS needs this for deterministic matrix products on CUDA >= 10.2
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    tf32 = cfg.tf32 and device.type == "cuda"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")


class Accelerated(torch.nn.Module):
    """The training module: inputs in channels_last when the model is, then the model or its
    compiled form. Eager itself, so that a new CUDA-graph step can be marked before each call."""

    def __init__(self, model: torch.nn.Module, channels_last: bool, compile_mode: Compile
                 ) -> None:
        super().__init__()
        self.channels_last = channels_last
        self.cuda_graphs = compile_mode == Compile.reduce_overhead
        self.inner = (model if compile_mode == Compile.off
                      else torch.compile(model, mode=compile_mode.mode))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.cuda_graphs:
            # a training step is one replay: the previous step's outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        return self.inner(x)


def accelerate(model: torch.nn.Module, cfg: TrainerConfig, device: torch.device
               ) -> torch.nn.Module:
    """The module a training step calls for ``model`` on ``device``; ``model`` itself when
    ``cfg`` asks for neither channels_last nor compile.

    channels_last converts ``model``'s own parameters (in place: the optimizer and the
    checkpoints see the same tensors); build the optimizer after this or before, alike.
    A DistributedDataParallel wrapper goes around the returned module.
    """
    if not cfg.channels_last and cfg.compile == Compile.off:
        return model
    check_compile(cfg, device.type)
    if cfg.channels_last:
        model.to(device=device, memory_format=torch.channels_last)
    if cfg.compile != Compile.off and resolved_deterministic(cfg.deterministic, device.type):
        # compiled dropout would draw from Inductor's own generator: with the eager one a
        # compiled run draws what an eager run does, and resumes exactly from its RNG state
        from torch._inductor import config as inductor  # (seconds to import: only here)

        inductor.fallback_random = True
    return Accelerated(model, cfg.channels_last, cfg.compile)


__all__ = ["EXACT_COMPILED_DROPOUT", "Accelerated", "accelerate", "check_compile",
           "compiled_dropout_is_exact", "configure_backends"]
