"""The base of every hyper-parameter that takes one of a fixed set of names.

A choice is declared once, as a :class:`Choice` subclass beside the model or layer that
uses it; the schema in ``rcnnexp/config/`` types its field with that class (OmegaConf then
refuses other names while composing), and the constructor converts what it is given with
:meth:`Choice.of`, which accepts a member or its name and names the key, the value and the
choices otherwise. This module imports nothing of the project, so every layer can use it.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

C = TypeVar("C", bound="Choice")


class Choice(str, Enum):
    """A member is its name as a string: it prints, formats, compares and serialises as that
    name (``enum.StrEnum`` does the same from Python 3.11; the project supports 3.10)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def names(cls) -> str:
        """The allowed names, in declaration order, as a message lists them."""
        return ", ".join(member.value for member in cls)

    @classmethod
    def of(cls: type[C], key: str, value: object) -> C:
        """``value`` (a member or its name) as a member of this choice.

        Raises ValueError naming ``key``, the value and the allowed names otherwise.
        """
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"{key} must be one of {cls.names()}; got {value!r}") from None
