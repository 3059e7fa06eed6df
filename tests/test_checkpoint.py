"""Checkpoints and a run's other files: atomic writes, verified loading, clear errors for bad
files and full disks."""

from __future__ import annotations

import copy
import errno
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import BinaryIO

import pytest
import torch
from conftest import compose_config, flip_a_byte

from rcnnexp.engine import storage
from rcnnexp.engine.checkpoint import (
    TRAINING_KEYS,
    config_differences,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from rcnnexp.engine.logger import RunLogger
from rcnnexp.engine.runtime import rng_state, set_rng_state
from rcnnexp.errors import CheckpointError, StorageError


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


def checkpoint_of(epoch: int) -> dict[str, object]:
    """A checkpoint as `rcnnexp train` writes it, of a tiny model after ``epoch`` epochs."""
    model = torch.nn.Linear(50, 50)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": {"iteration": 0}, "scaler": {}, "rng": rng_state(),
            "state": {"epoch": epoch, "step": 10 * epoch}}


def test_a_flipped_byte_in_a_tensor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, checkpoint_of(2))
    flip_a_byte(path)
    with pytest.raises(CheckpointError, match=r"corrupt: its entry \S*data/0 fails its CRC"):
        load_checkpoint(path)


def test_a_broken_last_pt_names_the_intact_best_pt_and_how_to_use_it(tmp_path: Path) -> None:
    last, best = tmp_path / "checkpoints" / "last.pt", tmp_path / "checkpoints" / "best.pt"
    save_checkpoint(last, checkpoint_of(3))
    save_checkpoint(best, checkpoint_of(2))
    flip_a_byte(last)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(last, needs=TRAINING_KEYS)
    assert f"{best} (epoch 2) is intact" in str(err.value)
    assert f"trainer.resume={best}" in str(err.value) and "\n" not in str(err.value)
    flip_a_byte(best)
    with pytest.raises(CheckpointError, match=r"best\.pt is not usable either"):
        load_checkpoint(last)
    best.unlink()
    with pytest.raises(CheckpointError, match=r"no other checkpoint .* move .*last\.pt away"):
        load_checkpoint(last)


@pytest.mark.parametrize("content", [{}, {"state": {"epoch": 1}}, {"model": [1, 2]}])
def test_a_checkpoint_without_model_weights_is_refused_by_name(tmp_path: Path,
                                                               content: dict[str, object]
                                                               ) -> None:
    path = tmp_path / "x.pt"
    torch.save({"format": "rcnnexp-checkpoint", **content}, path)
    with pytest.raises(CheckpointError, match="incomplete: it has no model"):
        load_checkpoint(path)


class FullDisk:
    """``open`` for a disk with ``room`` bytes left: writes beyond them raise ENOSPC."""

    def __init__(self, room: int) -> None:
        self.room = room

    def __call__(self, path: Path, mode: str = "r") -> BinaryIO:
        fh = open(path, mode)  # noqa: SIM115 (closed by the caller's with-block)
        if "w" not in mode:
            return fh
        real_write = fh.write

        def write(data: bytes) -> int:
            if len(data) > self.room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.room -= len(data)
            return real_write(data)

        fh.write = write  # type: ignore[method-assign]
        return fh


def test_a_full_disk_keeps_the_previous_checkpoint_and_removes_the_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, checkpoint_of(1))
    before = path.read_bytes()
    monkeypatch.setattr(storage, "open", FullDisk(room=4000), raising=False)
    with pytest.raises(StorageError) as err:
        save_checkpoint(path, checkpoint_of(2))
    message = str(err.value)
    assert message.startswith("no space left on the disk mounted at ") and "\n" not in message
    assert f"to write {path} (it needs about " in message
    assert "trainer.resume=auto" in message
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left
    assert path.read_bytes() == before


def test_a_full_disk_under_tensorboard_is_a_storage_error(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    logger = RunLogger(tmp_path)
    assert logger.writer is not None

    def add_scalar(*_: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(logger.writer, "add_scalar", add_scalar)
    with pytest.raises(StorageError, match=re.escape(f"to write {tmp_path / 'tb'} ")):
        logger.scalar("train/lr", 0.1, 1)
    logger.close()


def test_a_run_on_a_full_disk_is_refused_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hydra would write .hydra/config.yaml half and fail with a traceback: the command
    line's guard checks the room first (rcnnexp/cli.py, RunGuard)."""
    run_dir = tmp_path / "outputs" / "run"
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(storage.shutil, "disk_usage",
                        lambda _: usage._replace(free=storage.ROOM_TO_START - 1))
    with pytest.raises(StorageError) as err:
        storage.check_room_to_start(run_dir)
    assert f"to write {run_dir / '.hydra' / 'config.yaml'} (it needs about 1.0 MB" in str(err.value)
    assert not (tmp_path / "outputs").exists()
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda _: usage._replace(
        free=storage.ROOM_TO_START))
    storage.check_room_to_start(run_dir)  # room enough: nothing said


def test_results_json_is_strict_json_with_null_for_non_finite_numbers(tmp_path: Path) -> None:
    logger = RunLogger(tmp_path, enabled=True)
    logger.json("results.json", {"train_loss": math.nan, "best": [1.0, math.inf], "n": 3})
    logger.close()

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    text = (tmp_path / "results.json").read_text()
    assert json.loads(text, parse_constant=refuse) == {"train_loss": None, "best": [1.0, None],
                                                       "n": 3}


def test_a_checkpoint_from_before_a_key_existed_resumes_as_that_keys_default(
        tmp_path: Path) -> None:
    """A key added to a schema since a run was written (model.lrn_alpha, say) is not a change
    of config when the resumed run keeps its default; another value still is."""
    from rcnnexp.config import to_plain
    from rcnnexp.engine.resume import check_same_run

    plain = to_plain(compose_config([]))
    older = copy.deepcopy(plain)
    del older["model"]["lrn_alpha"], older["trainer"]["retrain"]
    check_same_run({"config": older}, plain, tmp_path / "last.pt")
    changed = to_plain(compose_config(["model.lrn_alpha=0.01"]))
    with pytest.raises(CheckpointError, match=r"model\.lrn_alpha: 0\.001 -> 0\.01"):
        check_same_run({"config": older}, changed, tmp_path / "last.pt")


def test_a_run_continued_with_its_data_moved_is_the_same_run(tmp_path: Path) -> None:
    """The same files in another folder (a run continued on another machine, or from a node's
    local copy) are no change of config; other files' settings still are."""
    from rcnnexp.config import to_plain
    from rcnnexp.engine.resume import check_same_run

    written = to_plain(compose_config(["dataset=mnist", "dataset.root=/first/machine"]))
    moved = to_plain(compose_config(["dataset=mnist", "dataset.root=/second/machine",
                                     "dataset.download=false"]))
    check_same_run({"config": written}, moved, tmp_path / "last.pt")
    scaled = to_plain(compose_config(["dataset=mnist", "dataset.root=/second/machine",
                                      "dataset.scale=255"]))
    with pytest.raises(CheckpointError, match=r"dataset\.scale: 1(\.0)? -> 255"):
        check_same_run({"config": written}, scaled, tmp_path / "last.pt")
