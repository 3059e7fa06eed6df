"""Config schemas (dataclasses in Hydra's ConfigStore) and the validation of a composed config.

Every group option in ``conf/<group>/<option>.yaml`` starts from its schema with
``defaults: [/schema/<group>@_here_: <name>]``, so an unknown key or a wrong type fails while
Hydra composes, before any work. Value checks that types cannot express live in each
schema's ``__post_init__`` and run in :func:`validate`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rcnnexp.config.dataset import DATASET_SCHEMAS, DatasetConfig, DigitsConfig
from rcnnexp.config.explain import check_known_keys, explain
from rcnnexp.config.finetune import FinetuneConfig
from rcnnexp.config.model import AlexNetConfig, CRNNConfig, RCNNConfig, RecNetConfig
from rcnnexp.config.optim import AdamConfig, SGDConfig
from rcnnexp.config.root import Config, PaperResult
from rcnnexp.config.schedule import (
    ConstantScheduleConfig,
    CosineRestartsScheduleConfig,
    PlateauScheduleConfig,
    ScheduleConfig,
    StepScheduleConfig,
)
from rcnnexp.config.trainer import TrainerConfig
from rcnnexp.errors import ConfigError

# group -> option name -> schema; the YAML option of the same name extends it
SCHEMAS: dict[str, dict[str, type]] = {
    "model": {"rcnn": RCNNConfig, "recnet": RecNetConfig, "alexnet": AlexNetConfig,
              "crnn": CRNNConfig},
    "dataset": {"digits": DigitsConfig},
    "optim": {"sgd": SGDConfig, "adam": AdamConfig},
    "schedule": {
        "constant": ConstantScheduleConfig,
        "step": StepScheduleConfig,
        "cosine_restarts": CosineRestartsScheduleConfig,
        "plateau": PlateauScheduleConfig,
    },
}
SCHEMAS["dataset"].update(DATASET_SCHEMAS)  # every dataset option: rcnnexp/config/dataset.py


def register_configs() -> None:
    """Put the root schema and every group's schemas into Hydra's ConfigStore."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, options in SCHEMAS.items():
        for name, schema in options.items():
            cs.store(group=f"schema/{group}", name=name, node=schema)


def validate(cfg: DictConfig) -> Config:
    """Run every schema's value checks and the checks across groups; return typed objects.

    Raises :class:`ConfigError` naming the offending key and what would be right; a key that
    no schema declares (added with ``+``) is one.
    """
    check_known_keys(cfg)
    try:
        typed = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(explain(err)) from None
    assert isinstance(typed, Config)
    schedule = typed.schedule
    if isinstance(schedule, ScheduleConfig):
        schedule.check_epochs(typed.trainer.epochs)
    return typed


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain Python (enums as strings): for results.json and checkpoints."""
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(plain, dict)
    return plain


def with_new_keys(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored config (a checkpoint's) with every key its group's schema has gained since
    filled in with that key's default: a run written before a key existed ran as the key's
    default does, so resuming it is not a change of config."""
    out = copy.deepcopy(dict(stored))
    root = OmegaConf.to_container(OmegaConf.structured(Config), enum_to_str=True)
    assert isinstance(root, dict)
    for key, value in root.items():  # top-level keys (optimized_metric), not the groups
        if value != "???" and not isinstance(value, dict):
            out.setdefault(key, value)
    for group, options in {**SCHEMAS, "trainer": {"default": TrainerConfig},
                           "finetune": {"default": FinetuneConfig}}.items():
        node = out.get(group)
        if not isinstance(node, dict):
            continue
        target = node.get("_target_")
        schema = next((c for c in options.values()
                       if getattr(c, "_target_", None) == target), None)
        if schema is None:
            continue
        defaults = OmegaConf.to_container(OmegaConf.structured(schema), enum_to_str=True)
        assert isinstance(defaults, dict)
        for key, value in defaults.items():
            node.setdefault(key, value)
    return out


__all__ = [
    "SCHEMAS",
    "Config",
    "DatasetConfig",
    "FinetuneConfig",
    "PaperResult",
    "TrainerConfig",
    "explain",
    "register_configs",
    "to_plain",
    "validate",
    "with_new_keys",
]
