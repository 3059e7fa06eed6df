"""Turn config groups into objects through their ``_target_``: the engine names no family.

A model class is called with its config's fields plus the dataset's ``in_channels``,
``num_classes`` and ``image_size``; a dataset with its config's fields; an optimizer with
the trainable parameters; a schedule with the optimizer and the run's length.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

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


def build_optimizer(cfg: DictConfig, params: Iterable[torch.nn.Parameter]
                    ) -> torch.optim.Optimizer:
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ConfigError("no parameter is left to train (check finetune.trainable)")
    if "fused" not in cfg:
        return _instantiate("optim", cfg, params=trainable)
    return _instantiate("optim", cfg, params=trainable, fused=use_fused(cfg.fused, trainable))


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
