"""`rcnnexp train --help`: the user's groups with their options, and every key of every
family with its type, default and description, all taken from conf/ and the schemas."""

from __future__ import annotations

import dataclasses
import re

import pytest
from conftest import run_cli

from rcnnexp.config import SCHEMAS


@pytest.fixture(scope="module")
def help_text() -> str:
    proc = run_cli("train", "--help")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_only_the_users_groups_are_listed_with_their_options(help_text: str) -> None:
    groups = help_text.split("== Config groups ==")[1].split("== Keys ==")[0]
    assert "schema" not in groups  # the schemas behind the options are not choosable
    for group in ("model", "dataset", "optim", "schedule", "experiment", "table", "recipe"):
        assert f"\n{group}:" in groups, group
    assert "rcnn*" in groups and "digits*" in groups  # the defaults are marked
    assert "recnet_30_60" in groups and "rcnn/t4_rcnn32" in groups and "recnet/t2d" in groups
    assert "model_dataset: chosen automatically as <model>_<dataset>.yaml" in groups


def test_every_familys_keys_are_described(help_text: str) -> None:
    keys = help_text.split("== Keys ==")[1]
    assert "model.K: int = 96  # feature maps in every layer" in keys  # RCNN's
    assert "model.S: list[int] = [8, 16, 32]  # segment channels per stage" in keys  # RecNet's
    assert "model.hidden: int = 256" in keys and "model.bptt: window | sequence" in keys  # C-RNN
    assert "dataset.partition: int = 1" in keys and "schedule.patience: int = 5" in keys
    assert "trainer.device: auto | cpu | cuda = auto  # auto: cuda when available" in keys
    for group, schemas in SCHEMAS.items():
        for schema in schemas.values():
            for f in dataclasses.fields(schema):
                if f.name != "_target_":
                    assert f"{group}.{f.name}: " in keys, f"{group}.{f.name}"


def test_every_key_has_a_description(help_text: str) -> None:
    """Each key line ends in ``# what it means`` or has it on the lines below (taken from
    the schema's comment on the field, or on an enum's members)."""
    lines = help_text.split("== Keys ==")[1].split("\n\nRuns go to")[0].splitlines()
    key = re.compile(r"^ *(name|[a-z_]+\.[A-Za-z_]+): ")
    undescribed = []
    for line, below in zip(lines, [*lines[1:], ""], strict=True):
        indent = len(line) - len(line.lstrip())
        described = "  # " in line or (below.strip() and not key.match(below)
                                        and len(below) - len(below.lstrip()) > indent)
        if key.match(line) and not described:
            undescribed.append(line.strip())
    assert len([line for line in lines if key.match(line)]) > 100
    assert undescribed == []
