"""A model that crashes in its first training step: a sweep job that fails at run time, as a
bug would, after its config was accepted and its run directory written.

Sweep tests reach it through ``model._target_=crashing_model.CrashingRCNN``; the CLI finds it
on the PYTHONPATH that ``conftest.cli_env`` gives it.
"""

from __future__ import annotations

import torch

from rcnnexp.models.rcnn import RCNN


class CrashingRCNN(RCNN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError("the test model crashed in training")
        return super().forward(x)
