"""The parameter table of docs/models.md: every RecNet row of Tables 2-4 (our count, the
paper's, the difference) and the C-RNN paper's models, built from the presets in conf/model.

    PYTHONPATH=$PWD python scripts/param_table.py                      # print the table
    PYTHONPATH=$PWD python scripts/param_table.py --write docs/models.md   # update the docs
    PYTHONPATH=$PWD python scripts/param_table.py --check docs/models.md   # exit 1 if stale

Each model is composed exactly as ``rcnnexp train model=... <overrides>`` would compose it
and built on PyTorch's meta device (no memory, no initialisation), with the input the paper
counts for: CIFAR-100 (3x32x32, 100 classes) for RecNets, ImageNet (3x227x227, 1,000
classes) for AlexNet and C-RNN.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from rcnnexp.cli import CONF_DIR
from rcnnexp.config import register_configs

START = "<!-- param-table:start (scripts/param_table.py --write docs/models.md) -->"
END = "<!-- param-table:end -->"


@dataclass(frozen=True)
class Row:
    table: str
    label: str
    overrides: tuple[str, ...]
    paper: int | None  # the paper's count as it prints it (K or M rounded), None: not given
    paper_text: str  # how the paper prints it


RECNET = "model=recnet_60_1280"
RECNET_ROWS = [
    Row("2a", "ReLU", (RECNET, "model.sigma=relu"), None, "—"),
    Row("2a", "shared BN + ReLU", (RECNET, "model.sigma=shared_bn"), None, "—"),
    Row("2a", "separate BN + ReLU (default)", (RECNET,), None, "—"),
    Row("2a", "None (linear)", (RECNET, "model.sigma=linear"), None, "—"),
    Row("2b", "e = 1", (RECNET, "model.e=1"), 424_000, "424K"),
    Row("2b", "e = 2", (RECNET, "model.e=2"), 824_000, "824K"),
    Row("2b", "e = 4 (default)", (RECNET,), 1_769_000, "1,769K"),
    Row("2b", "e = 8", (RECNET, "model.e=8"), 4_239_000, "4,239K"),
    Row("2c", "W_x 3x3, W_h 1x1", (RECNET, "model.wh_kernel=1"), 1_425_000, "1,425K"),
    Row("2c", "W_x 1x1, W_h 3x3", (RECNET, "model.wx_kernel=1"), 1_683_000, "1,683K"),
    Row("2c", "W_x 3x3, W_h 3x3", (RECNET,), 1_769_000, "1,769K"),
    Row("2d", "recurrent", (RECNET,), 1_769_000, "1,769K"),
    Row("2d", "grouped", (RECNET, "model.mode=grouped"), 1_769_000, "1,769K"),
    Row("3", "RecNet(4,4,8,16,10,10,10)", ("model=recnet_60_640",), 471_000, "471K"),
    Row("3", "RecNet(4,4,8,16,15,15,15)", ("model=recnet_90_960",), 863_000, "863K"),
    Row("3", "RecNet(4,4,8,16,20,20,20)", ("model=recnet_120_1280",), 1_406_000, "1,406K"),
    Row("3", "RecNet(4,8,16,32,10,10,10)", ("model=recnet_60_1280",), 1_769_000, "1,769K"),
    Row("3", "RecNet(4,8,16,32,15,15,15)", ("model=recnet_90_1920",), 3_306_000, "3,306K"),
    Row("3", "RecNet(4,8,16,32,20,20,20)", ("model=recnet_120_2560",), 5_444_000, "5,444K"),
    Row("3", "RecNet(4,8,8,8,5,10,15)", ("model=recnet_60_480",), 316_000, "316K"),
    Row("3", "RecNet(4,8,8,8,10,15,20)", ("model=recnet_90_640",), 537_000, "537K"),
    Row("3", "RecNet(4,8,8,8,10,20,30)", ("model=recnet_120_960",), 930_000, "930K"),
    Row("3", "RecNet(4,16,16,16,5,10,15)", ("model=recnet_60_960",), 1_137_000, "1,137K"),
    Row("3", "RecNet(4,16,16,16,10,15,20)", ("model=recnet_90_1280",), 2_028_000, "2,028K"),
    Row("3", "RecNet(4,16,16,16,10,20,30)", ("model=recnet_120_1920",), 3_569_000, "3,569K"),
    Row("4", "RecNet-30-60 (chosen: RecNet(4,6,12,12,5,5,5))", ("model=recnet_30_60",),
        200_000, "0.2M (text: 240K)"),
    Row("4", "RecNet-120-2880 (chosen: RecNet(4,14,24,36,20,20,20))",
        ("model=recnet_120_2880",), 8_200_000, "8.2M (text: almost 9M)"),
]
CRNN_ROWS = [
    Row("1-3", "AlexNet (bvlc_alexnet)", ("model=alexnet",), None, "—"),
    Row("1-3", "C-RNN (four directions)", ("model=crnn",), None, "—"),
    Row("4", "C-RNN, one direction", ("model=crnn", "model.directions=[left_to_right]"),
        None, "—"),
    Row("4", "C-RNN, two directions", ("model=crnn",
                                       "model.directions=[left_to_right,right_to_left]"),
        None, "—"),
]
CIFAR100 = (3, 100, [32, 32])
IMAGENET = (3, 1000, [227, 227])


def build(overrides: tuple[str, ...], spec: tuple[int, int, list[int]]) -> torch.nn.Module:
    """The model ``rcnnexp train <overrides>`` would build for ``spec``, on the meta device."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=list(overrides))
    channels, classes, size = spec
    with torch.device("meta"):
        return instantiate(cfg.model, _convert_="all", in_channels=channels,
                           num_classes=classes, image_size=size)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def recnet_counts() -> dict[tuple[str, str], int]:
    """(table, row) -> our parameter count on CIFAR-100."""
    return {(r.table, r.label): count(build(r.overrides, CIFAR100)) for r in RECNET_ROWS}


def markdown() -> str:
    register_configs()
    lines = [
        "RecNets (Retsinas et al. 2019), CIFAR-100 (3x32x32, 100 classes). The paper rounds "
        "to thousands, so a difference is good to +-500.",
        "",
        "| Table | Row | Model (overrides) | Ours | Paper | Ours - paper |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in RECNET_ROWS:
        ours = count(build(row.overrides, CIFAR100))
        diff = "—" if row.paper is None else f"{ours - row.paper:+,}"
        lines.append(f"| {row.table} | {row.label} | `{' '.join(row.overrides)}` | {ours:,} | "
                     f"{row.paper_text} | {diff} |")
    lines += [
        "",
        "C-RNN (Zuo et al. 2015) and its AlexNet baseline, ImageNet (3x227x227, 1,000 "
        "classes). The paper gives only the RNN layer: 524,288 weights (4 directions x "
        "2 x 256 x 256); ours adds one 256-bias per direction (see the bias convention).",
        "",
        "| Table | Row | Model (overrides) | Ours | of which RNN layer |",
        "|---|---|---|---:|---:|",
    ]
    for row in CRNN_ROWS:
        model = build(row.overrides, IMAGENET)
        rnn = getattr(model, "rnn", None)
        rnn_count = "—" if rnn is None else f"{count(rnn):,}"
        lines.append(f"| {row.table} | {row.label} | `{' '.join(row.overrides)}` | "
                     f"{count(model):,} | {rnn_count} |")
    return "\n".join(lines) + "\n"


def replace_block(text: str, table: str) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"the docs have no block between {START!r} and {END!r}")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}{END}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", type=Path, help="replace the table block in this file")
    group.add_argument("--check", type=Path, help="exit 1 if this file's table is stale")
    args = parser.parse_args()
    table = markdown()
    if args.write:
        args.write.write_text(replace_block(args.write.read_text(), table))
        print(f"updated {args.write}")
    elif args.check:
        text = args.check.read_text()
        if replace_block(text, table) != text:
            print(f"{args.check} is stale: run scripts/param_table.py --write {args.check}",
                  file=sys.stderr)
            raise SystemExit(1)
        print(f"{args.check} is up to date")
    else:
        print(table, end="")


if __name__ == "__main__":
    main()
