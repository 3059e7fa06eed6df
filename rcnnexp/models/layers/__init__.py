"""Building blocks named as the papers name them."""

from rcnnexp.models.layers.rcl import RCL

__all__ = ["RCL"]
