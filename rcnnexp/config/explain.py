"""Hydra's and OmegaConf's composition errors in one line, with a suggestion for a typo.

Hydra reports a bad override over 5-25 lines (its search path, OmegaConf's internals, a hint
to set HYDRA_FULL_ERROR); a user needs the key or option that was wrong, the nearest right
one, and the choices. Keys that no schema declares are refused however they were written
(``+trainer.epoch=3`` composes, since ``+`` adds keys, and would otherwise be ignored).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Iterable, Iterator, Sequence
from enum import Enum
from typing import Any

from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    ConfigTypeError,
    OmegaConfBaseException,
    ValidationError,
)

from rcnnexp.errors import ConfigError


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The one of ``choices`` closest to ``word``, or None when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the closest of ``choices``, or nothing when none is close."""
    close = closest(word, choices)
    return f" (did you mean {close}?)" if close else ""


def explain(err: Exception) -> str:
    """One line for an exception Hydra or OmegaConf raised while composing a config."""
    if isinstance(err, MissingConfigException) and err.missing_cfg_file:
        return _missing_option(err.missing_cfg_file, err.options)
    if isinstance(err, OverrideParseException):
        first = str(err.message).splitlines()[0]
        return (f"cannot parse the override {err.override!r}: {first} (the syntax: "
                "https://hydra.cc/docs/advanced/override_grammar/basic/)")
    cause = err if isinstance(err, OmegaConfBaseException) else err.__cause__
    if isinstance(cause, OmegaConfBaseException):
        return _omegaconf(cause)
    return " ".join(str(err).split("Config search path:")[0].split())


def another_family(err: Exception, overrides: Sequence[str]) -> str | None:
    """The message for an experiment's model keys under a model of another family, or None.

    ``experiment=rcnn/t4_rcnn32 model=recnet`` fails on RCNN's ``model.dropout`` (set by the
    row's recipe), which RecNetConfig lacks; OmegaConf's key error names neither the
    experiment nor the fix, which is to leave the model to the experiment.
    """
    # Hydra reports a key error in a config file as text (no __cause__ to read it from)
    text = str(err)
    key_error = re.search(r"Config(Key|Attribute)Error.*?full_key: (\S+)", text, re.DOTALL)
    if key_error is None:
        return None
    key = key_error.group(2)
    chosen = {k.lstrip("+~"): v for k, _, v in (o.partition("=") for o in overrides)}
    experiment, model = chosen.get("experiment"), chosen.get("model")
    if not key.startswith("model.") or experiment in (None, "", "null") or model is None:
        return None
    found = re.search(r"In '([^']+)'", text)
    through = (f" (through conf/{found.group(1)}.yaml)"
               if found and not found.group(1).startswith("experiment/") else "")
    schema_found = re.search(r"object_type=(\w+)", text)
    schema = schema_found.group(1) if schema_found else model
    return (f"experiment={experiment} sets {key}{through}, a key of its own model family, "
            f"which model={model} ({schema}) does not have: an experiment fixes its model; "
            f"leave out model={model}, or choose an experiment of that family "
            "(docs/experiments.md)")


# the options of Hydra's groups that come with a plugin package (it registers them when it is
# installed): where one is missing (an image that brings its own torch and not every
# dependency), the line names the package, not just the options that are there
PLUGIN_OPTIONS = {
    "hydra/sweeper/optuna": "hydra-optuna-sweeper",  # search=...
    "hydra/sweeper/sampler": "hydra-optuna-sweeper",
    "hydra/launcher/submitit_local": "hydra-submitit-launcher",  # search=..., a local sweep
    "hydra/launcher/submitit_slurm": "hydra-submitit-launcher",  # cluster=slurm
}


def _missing_option(path: str, options: list[str] | None) -> str:
    group, _, option = path.rpartition("/")
    package = next((package for prefix, package in PLUGIN_OPTIONS.items()
                    if path == prefix or path.startswith(prefix + "/")), None)
    if package is not None:
        return (f"{group}={option} comes with the package {package}, which this Python does "
                f"not have: pip install {package} (one of pyproject.toml's dependencies)")
    listing = f"; the options are {', '.join(options)}" if options else ""
    return (f"{group}={option}: {group} has no option {option!r}"
            f"{did_you_mean(option, options or [])}{listing} (conf/{group}/)")


def _omegaconf(err: OmegaConfBaseException) -> str:
    key = str(err.full_key) if err.full_key else str(err.key or "")
    schema = err.object_type if dataclasses.is_dataclass(err.object_type) else None
    if isinstance(err, ConfigAttributeError | ConfigKeyError) and schema is not None:
        parent = key.rpartition(".")[0]
        return unknown_key_message(key, parent, schema_keys(schema))
    if isinstance(err, ValidationError):
        first = err.msg.splitlines()[0] if err.msg else type(err).__name__
        choices = _enum_choices(schema, str(err.key)) if schema is not None else []
        hint = did_you_mean(str(err.value), choices) if choices else ""
        if schema is not None and not choices:
            hint = _bool_hint(schema, str(err.key))
        return f"{key}={err.value}: {first}{hint}"
    if isinstance(err, ConfigTypeError) and "deletion" in str(err.msg):
        return (f"~{key}: a key the schema declares cannot be deleted; set it instead "
                f"({key}=VALUE)")
    first = str(err.msg or err).splitlines()[0]
    return f"{key}: {first}" if key else first


def schema_keys(schema: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(schema)]


def _enum_choices(schema: Any, field_name: str) -> list[str]:
    try:
        hints = typing.get_type_hints(schema)
    except (NameError, TypeError):
        return []
    kind = hints.get(field_name)
    return [m.value for m in kind] if isinstance(kind, type) and issubclass(kind, Enum) else []


def _bool_hint(schema: Any, field_name: str) -> str:
    """What a yes/no key takes, said where OmegaConf says only what it does not."""
    try:
        kind = typing.get_type_hints(schema).get(field_name)
    except (NameError, TypeError):
        return ""
    if kind is bool:
        return " (write true or false)"
    if kind == bool | None:
        return " (write true, false or null)"
    return ""


def unknown_key_message(key: str, parent: str, known: list[str]) -> str:
    where = f"of {parent}" if parent else "at the top level of the config"
    close = closest(key.rpartition(".")[2], known)
    suggestion = f" (did you mean {parent + '.' if parent else ''}{close}?)" if close else ""
    return (f"{key} is not a key {where}{suggestion}; the keys are {', '.join(known)} "
            "(rcnnexp train --help lists them)")


def check_known_keys(cfg: DictConfig) -> None:
    """Refuse any key that its node's schema does not declare (added with ``+`` or ``++``)."""
    for key, parent, known in _unknown_keys(cfg, ""):
        raise ConfigError(unknown_key_message(key, parent, known))


def _unknown_keys(node: Any, prefix: str) -> Iterator[tuple[str, str, list[str]]]:
    if not isinstance(node, DictConfig | ListConfig) or node._is_none() or node._is_missing():
        return
    if isinstance(node, ListConfig):
        for i, item in enumerate(node):
            yield from _unknown_keys(item, f"{prefix}[{i}]")
        return
    schema = OmegaConf.get_type(node)
    known = schema_keys(schema) if dataclasses.is_dataclass(schema) else None
    for name in node:
        key = f"{prefix}.{name}" if prefix else str(name)
        if known is not None and name not in known:
            yield key, prefix, known
            continue
        yield from _unknown_keys(node._get_node(name), key)
