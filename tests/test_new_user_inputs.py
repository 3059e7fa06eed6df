"""What a new user types wrong (issue 19), through the CLI: one ``error:`` line naming the
key and what would be right, exit 2, and nothing written where the command was refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import QUICK, assert_one_line_error, in_process


def files_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


@pytest.mark.parametrize("written", ["hydra.run.dir=", "hydra.run.dir=''"])
def test_an_empty_run_directory_is_refused_not_taken_for_the_current_folder(
        written: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    proc = in_process(capsys, "train", *QUICK, written)
    assert_one_line_error(proc, "hydra.run.dir= is empty", "hydra.run.dir=outputs/NAME")
    assert files_under(tmp_path) == []


def test_an_empty_sweep_directory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys) -> None:
    monkeypatch.chdir(tmp_path)
    proc = in_process(capsys, "train", "-m", *QUICK, "model.K=8,12", "hydra.sweep.dir=")
    assert_one_line_error(proc, "hydra.sweep.dir= is empty")
    assert files_under(tmp_path) == []


def test_an_empty_name_is_refused(run_dir: Path, capsys) -> None:
    proc = in_process(capsys, "train", *QUICK, "name=", f"hydra.run.dir={run_dir}")
    assert_one_line_error(proc, "name='' is empty", "name=baseline")
    assert not run_dir.exists()
