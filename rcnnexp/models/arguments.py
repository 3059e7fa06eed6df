"""Checks of the models' arguments that the schemas apply too: written once, here.

A model class runs them on what it is given (a script or a test may build one directly);
the schema in ``rcnnexp/config/model.py`` runs the same ones while a config is validated,
before any data is touched, with ``prefix="model."`` so that the message names the key as
a user writes it. Like :mod:`rcnnexp.models.choices`, this module does without torch.
"""

from __future__ import annotations

from collections.abc import Sequence

from rcnnexp.models.choices import Direction

ALEXNET_CHANNELS = (96, 256, 384, 384, 256)  # conv1-5 of bvlc_alexnet


def recnet_stages(e: int, S: Sequence[int], d: Sequence[int], prefix: str = ""
                  ) -> tuple[list[int], list[int]]:
    """RecNet's expansion and its stages: one S_i and one d_i per stage, all positive."""
    S, d = [int(s) for s in S], [int(k) for k in d]
    if e < 1:
        raise ValueError(f"{prefix}e must be positive, got {e}")
    if not S or len(S) != len(d):
        raise ValueError(f"{prefix}S and {prefix}d must give one value per stage (the paper's "
                         f"RecNet has 3: S=[S1,S2,S3], d=[d1,d2,d3]); got S={S} and d={d}")
    if min(S) < 1 or min(d) < 1:
        raise ValueError(f"{prefix}S and {prefix}d must be positive, got S={S}, d={d}")
    return S, d


def alexnet_channels(channels: Sequence[int], groups: int, prefix: str = ""
                     ) -> tuple[int, int, int, int, int]:
    """conv1-5 widths: five positive numbers; conv2, conv4, conv5 split into ``groups``."""
    widths = [int(c) for c in channels]
    if len(widths) != 5 or min(widths) < 1:
        raise ValueError(f"{prefix}channels must be five positive widths (conv1-5, AlexNet: "
                         f"{list(ALEXNET_CHANNELS)}), got {widths}")
    if groups < 1:
        raise ValueError(f"{prefix}groups must be positive, got {groups}")
    bad = [f"conv{i + 1}={c}" for i, c in enumerate(widths) if c % groups]
    if bad:  # conv2, conv4, conv5 are grouped: their inputs and outputs split into groups
        raise ValueError(f"{prefix}channels {widths} must be divisible by {prefix}groups="
                         f"{groups} (conv2, conv4 and conv5 are grouped convolutions), not "
                         f"{', '.join(bad)}")
    c1, c2, c3, c4, c5 = widths
    return c1, c2, c3, c4, c5


def crnn_directions(directions: Sequence[Direction | str], prefix: str = ""
                    ) -> tuple[Direction, ...]:
    """C-RNN's scanning directions: at least one, each a :class:`Direction`, none twice."""
    key = f"{prefix}directions"
    members = tuple(Direction.of(key, d) for d in directions)
    if not members:
        raise ValueError(f"{key} must name at least one of {Direction.names()}; got []")
    if len(set(members)) != len(members):
        raise ValueError(f"{key} lists a direction twice: {[str(d) for d in members]}")
    return members


__all__ = ["ALEXNET_CHANNELS", "alexnet_channels", "crnn_directions", "recnet_stages"]
