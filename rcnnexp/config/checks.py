"""Small helpers that schemas use in ``__post_init__`` to reject invalid values."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rcnnexp.config.explain import did_you_mean
from rcnnexp.errors import ConfigError


def require(condition: bool, message: str) -> None:
    """Raise a :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


def positive(key: str, value: float) -> None:
    require(value > 0, f"{key} must be positive, got {value}")


def non_negative(key: str, value: float) -> None:
    require(value >= 0, f"{key} must be zero or more, got {value}")


SEED_LIMIT = 2**63  # torch.manual_seed takes a 64-bit integer; numpy's seed is taken mod 2**32


def seed(key: str, value: int) -> None:
    require(0 <= value < SEED_LIMIT,
            f"{key} must be an integer from 0 to {SEED_LIMIT - 1}, got {value}")


def physical_memory() -> int | None:
    """This machine's memory in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def fits_in_memory(setting: str, params: int) -> None:
    """Refuse a model whose fp32 weights alone, ``params`` at the least, exceed this
    machine's memory: building it would ask the OS for them (1.4 TB for ``model.K=100000``)
    and fail or swap minutes later, where this refuses it before any work."""
    memory = physical_memory()
    need = 4 * params
    require(memory is None or need <= memory,
            f"{setting} gives at least {params:,} parameters ({need / 2**30:,.0f} GiB in fp32), "
            f"more than this machine's {(memory or 0) / 2**30:,.0f} GiB of memory: choose a "
            "smaller model")


def one_of(key: str, value: Any, choices: Iterable[Any]) -> None:
    choices = list(choices)
    if value in choices:
        return
    names = [str(c) for c in choices]
    raise ConfigError(f"{key} must be one of {', '.join(names)}; got {value!r}"
                      f"{did_you_mean(str(value), names)}")


def model_check(check: Callable[..., object], *args: object) -> None:
    """A check the model classes apply to their own arguments (:mod:`rcnnexp.models.arguments`),
    run on a schema's fields: its ValueError, naming ``model.KEY``, as a ConfigError."""
    try:
        check(*args, prefix="model.")
    except ValueError as err:
        raise ConfigError(str(err)) from None


def increasing_epochs(key: str, epochs: Sequence[int]) -> None:
    """Epoch lists (restarts, milestones) must be positive and strictly increasing."""
    values = list(epochs)
    require(all(e > 0 for e in values), f"{key} must hold positive epochs, got {values}")
    require(all(a < b for a, b in itertools.pairwise(values)),
            f"{key} must be strictly increasing, got {values}")
