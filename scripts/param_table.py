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
from rcnnexp.report.catalogue import load_row

START = "<!-- param-table:start (scripts/param_table.py --write docs/models.md) -->"
END = "<!-- param-table:end -->"


@dataclass(frozen=True)
class Row:
    table: str
    label: str
    overrides: tuple[str, ...]
    preset: str | None = None  # the row's experiment preset, which holds the paper's count
    note: str = ""  # said after the paper's count

    @property
    def paper(self) -> int | None:
        """The paper's count as it prints it (rounded), from the row's preset."""
        return None if self.preset is None else load_row(CONF_DIR, self.preset).params

    @property
    def paper_text(self) -> str:
        count = self.paper
        if count is None:
            return "—"
        printed = f"{count / 1e6:g}M" if count % 1000 or self.table == "4" else (
            f"{count // 1000:,}K")
        return printed + self.note

    @property
    def tolerance(self) -> int:
        """Half the last printed digit: thousands (Tables 2-3) or 0.1 M (Table 4)."""
        return 50_000 if self.table == "4" else 500


RECNET = "model=recnet_60_1280"
RECNET_ROWS = [
    Row("2a", "ReLU", (RECNET, "model.sigma=relu"), "recnet/t2a_relu"),
    Row("2a", "shared BN + ReLU", (RECNET, "model.sigma=shared_bn"), "recnet/t2a_shared_bn"),
    Row("2a", "separate BN + ReLU (default)", (RECNET,), "recnet/t2a_separate_bn"),
    Row("2a", "None (linear)", (RECNET, "model.sigma=linear"), "recnet/t2a_linear"),
    Row("2b", "e = 1", (RECNET, "model.e=1"), "recnet/t2b_e1"),
    Row("2b", "e = 2", (RECNET, "model.e=2"), "recnet/t2b_e2"),
    Row("2b", "e = 4 (default)", (RECNET,), "recnet/t2b_e4"),
    Row("2b", "e = 8", (RECNET, "model.e=8"), "recnet/t2b_e8"),
    Row("2c", "W_x 3x3, W_h 1x1", (RECNET, "model.wh_kernel=1"), "recnet/t2c_wh1x1"),
    Row("2c", "W_x 1x1, W_h 3x3", (RECNET, "model.wx_kernel=1"), "recnet/t2c_wx1x1"),
    Row("2c", "W_x 3x3, W_h 3x3", (RECNET,), "recnet/t2c_both3x3"),
    Row("2d", "recurrent", (RECNET,), "recnet/t2d_recurrent"),
    Row("2d", "grouped", (RECNET, "model.mode=grouped"), "recnet/t2d_grouped"),
    *(Row("3", f"RecNet({arch})", (f"model=recnet_{name}",), f"recnet/t3_{name}")
      for arch, name in (("4,4,8,16,10,10,10", "60_640"), ("4,4,8,16,15,15,15", "90_960"),
                         ("4,4,8,16,20,20,20", "120_1280"), ("4,8,16,32,10,10,10", "60_1280"),
                         ("4,8,16,32,15,15,15", "90_1920"), ("4,8,16,32,20,20,20", "120_2560"),
                         ("4,8,8,8,5,10,15", "60_480"), ("4,8,8,8,10,15,20", "90_640"),
                         ("4,8,8,8,10,20,30", "120_960"), ("4,16,16,16,5,10,15", "60_960"),
                         ("4,16,16,16,10,15,20", "90_1280"),
                         ("4,16,16,16,10,20,30", "120_1920"))),
    Row("4", "RecNet-30-60 (chosen: RecNet(4,6,12,12,5,5,5))", ("model=recnet_30_60",),
        "recnet/t4_30_60", " (text: 240K)"),
    Row("4", "RecNet-120-2880 (chosen: RecNet(4,14,24,36,20,20,20))",
        ("model=recnet_120_2880",), "recnet/t4_120_2880", " (text: almost 9M)"),
]
CRNN_ROWS = [
    Row("1-3", "AlexNet (bvlc_alexnet)", ("model=alexnet",)),
    Row("1-3", "C-RNN (four directions)", ("model=crnn",)),
    Row("4", "C-RNN, one direction", ("model=crnn", "model.directions=[left_to_right]")),
    Row("4", "C-RNN, two directions",
        ("model=crnn", "model.directions=[left_to_right,right_to_left]")),
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


# the hidden layer before the classifier that reproduces most of the paper's counts
HEAD_FIT = 161


def _versus(ours: int, row: Row) -> str:
    if row.paper is None:
        return "—"
    mark = " ✓" if abs(ours - row.paper) <= row.tolerance else ""
    return f"{ours - row.paper:+,}{mark}"


def markdown() -> str:
    register_configs()
    lines = [
        "RecNets (Retsinas et al. 2019), CIFAR-100 (3x32x32, 100 classes). The paper rounds "
        "to thousands (Table 4: to 0.1 M), so a difference within half of that (✓) matches "
        "it. \"Ours\" follows the "
        f"text (one linear classifier); \"head {HEAD_FIT}\" adds `model.head_hidden="
        f"{HEAD_FIT}`.",
        "",
        f"| Table | Row | Model (overrides) | Ours | Paper | Ours - paper | Head {HEAD_FIT} "
        f"| Head {HEAD_FIT} - paper |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in RECNET_ROWS:
        ours = count(build(row.overrides, CIFAR100))
        fitted = count(build((*row.overrides, f"model.head_hidden={HEAD_FIT}"), CIFAR100))
        lines.append(f"| {row.table} | {row.label} | `{' '.join(row.overrides)}` | {ours:,} | "
                     f"{row.paper_text} | {_versus(ours, row)} | {fitted:,} | "
                     f"{_versus(fitted, row)} |")
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
