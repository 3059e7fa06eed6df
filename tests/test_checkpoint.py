"""Checkpoints: atomic writes, safe loading, clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rcnnexp.engine.checkpoint import (
    config_differences,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from rcnnexp.engine.runtime import rng_state, set_rng_state
from rcnnexp.errors import CheckpointError


def test_round_trip_loads_with_weights_only(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, {"model": model.state_dict(), "rng": rng_state(), "note": "x"})
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left
    state = torch.load(path, weights_only=True)
    assert state["format"] == "rcnnexp-checkpoint"
    torch.testing.assert_close(state["model"]["weight"], model.weight)


def test_rng_state_round_trip_reproduces_draws() -> None:
    import random

    import numpy as np

    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(state)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2])


def test_missing_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_corrupt_checkpoint_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(b"\x00not a zip file at all" * 10)
    with pytest.raises(CheckpointError, match="corrupt or not a checkpoint"):
        load_checkpoint(path)


def test_truncated_checkpoint_is_named(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": torch.nn.Linear(50, 50).state_dict()})
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


def test_foreign_torch_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an rcnnexp checkpoint"):
        load_checkpoint(path)


def test_weights_of_another_model_are_refused() -> None:
    with pytest.raises(CheckpointError, match="another model"):
        load_model_state(torch.nn.Linear(3, 2), torch.nn.Linear(3, 4).state_dict(), "x.pt")
    with pytest.raises(CheckpointError, match="missing"):
        load_model_state(torch.nn.Sequential(torch.nn.Linear(3, 2)),
                         torch.nn.Linear(3, 2).state_dict(), "x.pt")


def test_config_differences_are_dotted() -> None:
    diffs = config_differences({"model": {"K": 32, "T": 3}}, {"model": {"K": 64, "T": 3}})
    assert diffs == ["model.K: 32 -> 64"]
