"""Small helpers that schemas use in ``__post_init__`` to reject invalid values."""

from __future__ import annotations

import itertools
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
