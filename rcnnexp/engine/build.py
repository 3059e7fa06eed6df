"""Turn config groups into objects through their ``_target_``: the engine names no family.

A model class is called with its config's fields plus the dataset's ``in_channels``,
``num_classes`` and ``image_size``; a dataset with its config's fields; an optimizer with
the trainable parameters; a schedule with the optimizer and the run's length.
"""

from __future__ import annotations

from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rcnnexp.data.base import DataModule, DataSpec
from rcnnexp.engine.schedules import Schedule
from rcnnexp.errors import ConfigError, UserError
from rcnnexp.models.base import ImageClassifier


def _instantiate(group: str, cfg: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` whose ValueErrors become a one-line :class:`ConfigError`."""
    try:
        return instantiate(cfg, _convert_="all", **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        if isinstance(cause, ValueError | TypeError):
            raise ConfigError(f"{group}: {cause}") from None
        raise


def build_data(cfg: DictConfig) -> DataModule:
    data = _instantiate("dataset", cfg)
    if not isinstance(data, DataModule):
        raise ConfigError(f"dataset._target_={cfg._target_} does not build a DataModule")
    return data


def build_model(cfg: DictConfig, spec: DataSpec) -> ImageClassifier:
    model = _instantiate("model", cfg, in_channels=spec.in_channels,
                         num_classes=spec.num_classes, image_size=list(spec.image_size))
    if not isinstance(model, ImageClassifier):
        raise ConfigError(f"model._target_={cfg._target_} does not build an ImageClassifier")
    return model


def build_optimizer(cfg: DictConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer of ``model``'s trainable parameters; with ``optim.bias_lr_factor`` or
    ``optim.bias_weight_decay`` set off their defaults, the biases form a second param group
    (after the rest, so that group 0 holds ``optim.lr``), which the schedules scale as they
    scale the first (they multiply each group's own initial rate)."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ConfigError("no parameter is left to train (check finetune.trainable)")
    trainable = [p for _, p in named]
    keys = {k: v for k, v in cfg.items() if k not in BIAS_KEYS}
    groups = param_groups(named, lr=float(cfg.lr), weight_decay=float(cfg.weight_decay),
                          bias_lr_factor=float(cfg.get("bias_lr_factor", 1.0)),
                          bias_weight_decay=cfg.get("bias_weight_decay"))
    optim_cfg = OmegaConf.create(keys)
    if "fused" not in cfg:
        return _instantiate("optim", optim_cfg, params=groups)
    return _instantiate("optim", optim_cfg, params=groups,
                        fused=use_fused(cfg.fused, trainable))


BIAS_KEYS = ("bias_lr_factor", "bias_weight_decay")  # the builder's, not the optimizer's


def is_bias(name: str, param: torch.nn.Parameter) -> bool:
    """A bias as Caffe's per-blob multipliers meant it: a 1-D parameter named ``*bias``
    (BatchNorm's shift included; its scale, ``weight``, is not)."""
    return param.ndim == 1 and name.rsplit(".", 1)[-1].endswith("bias")


def param_groups(named: list[tuple[str, torch.nn.Parameter]], *, lr: float,
                 weight_decay: float, bias_lr_factor: float,
                 bias_weight_decay: float | None) -> list[dict[str, Any]]:
    """One group of every parameter when the biases learn as the rest do (the defaults: the
    optimizer and its state dict as before these keys existed); else the rest, then the
    biases with ``lr * bias_lr_factor`` and their own decay."""
    bias_decay = weight_decay if bias_weight_decay is None else float(bias_weight_decay)
    every = [p for _, p in named]
    if bias_lr_factor == 1.0 and bias_decay == weight_decay:
        return [{"params": every}]
    biases = [p for name, p in named if is_bias(name, p)]
    rest = [p for name, p in named if not is_bias(name, p)]
    groups: list[dict[str, Any]] = []
    if rest:
        groups.append({"params": rest})
    if biases:
        groups.append({"params": biases, "lr": lr * bias_lr_factor,
                       "weight_decay": bias_decay})
    return groups


def use_fused(fused: bool | None, params: list[torch.nn.Parameter]) -> bool | None:
    """What to pass as ``fused`` for ``optim.fused`` and these parameters: null is fused
    where all of them are on CUDA. Not fused is None, not False: an explicit False would
    also turn off the foreach step PyTorch picks by default on CUDA."""
    if fused is None:
        fused = all(p.device.type == "cuda" for p in params)
    return True if fused else None


def build_schedule(cfg: DictConfig, optimizer: torch.optim.Optimizer, iters_per_epoch: int,
                   epochs: int) -> Schedule:
    return _instantiate("schedule", cfg, optimizer=optimizer, iters_per_epoch=iters_per_epoch,
                        epochs=epochs)


def count_params(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Parameters of ``model``; with ``trainable_only``, those that learn (fine-tuning
    freezes the rest)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
