"""Refusals that name the fault they found, not a neighbouring one (in process, fast)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import compose_config

from rcnnexp.config import to_plain, validate
from rcnnexp.engine.build import build_data
from rcnnexp.engine.checkpoint import load_checkpoint
from rcnnexp.engine.resume import check_same_run
from rcnnexp.errors import CheckpointError, ConfigError


def test_a_text_file_is_not_a_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("hello, this is not a checkpoint\n")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "not a file written by torch.save" in str(err.value)
    assert "b'hell'" in str(err.value)  # what it starts with, not the byte code 101


def test_a_directory_named_last_pt_is_called_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.pt"
    path.mkdir(parents=True)
    with pytest.raises(CheckpointError, match="is a directory, not a file"):
        load_checkpoint(path)


def test_every_config_difference_is_counted(tmp_path: Path) -> None:
    whole = to_plain(compose_config())  # a complete config, its model replaced
    old = {**whole, "model": {f"k{i:02d}": i for i in range(13)}}
    new = {**whole, "model": {f"k{i:02d}": i + 1 for i in range(13)}}
    with pytest.raises(CheckpointError) as err:
        check_same_run({"config": old, "overrides": []}, new, tmp_path / "last.pt")
    assert "model.k09: 9 -> 10" in str(err.value)
    assert "model.k10" not in str(err.value)
    assert "... and 3 more" in str(err.value)


@pytest.mark.parametrize("views", ["grid9", "ten"])
def test_views_of_an_uncropped_image_are_refused(views: str) -> None:
    cfg = compose_config([f"dataset.views={views}"])  # the digits: 8x8, no crop
    validate(cfg)
    with pytest.raises(ConfigError) as err:
        build_data(cfg.dataset).setup(torch.device("cpu"))
    assert f"dataset.views={views}" in str(err.value)
    assert "the whole 8x8 image" in str(err.value) and "dataset.crop below 8" in str(err.value)


def test_grid9_without_room_for_its_stride_names_the_largest_crop() -> None:
    cfg = compose_config(["dataset.views=grid9", "dataset.crop=7"])
    with pytest.raises(ConfigError) as err:
        build_data(cfg.dataset).setup(torch.device("cpu"))
    assert "choose dataset.crop at most 6" in str(err.value)
    assert "between 1 and 0" not in str(err.value)
