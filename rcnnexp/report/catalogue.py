"""The papers' tables as the config knows them: every table (``conf/table``), its rows (the
experiment presets it sweeps) and each row's numbers (the preset's ``paper`` node).

Read straight from the YAML files, without composing: the report lists rows not run yet
beside the ones that were, so it needs all of them, and fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf


@dataclass(frozen=True)
class PaperNumber:
    dataset: str
    metric: str  # a results.json key: test_error, test_top1, ...
    value: float


@dataclass(frozen=True)
class PaperRow:
    preset: str  # experiment=<preset>
    paper: str
    table: str
    row: str
    numbers: tuple[PaperNumber, ...]
    params: int | None  # as the paper prints it
    decimals: int


@dataclass(frozen=True)
class PaperTable:
    name: str  # table=<name>, e.g. rcnn/t4
    title: str  # the first comment line of its config
    rows: tuple[PaperRow, ...]

    @property
    def paper(self) -> str:
        return self.rows[0].paper if self.rows else self.name.split("/")[0]

    @property
    def label(self) -> str:
        """"RCNN Table 4", "RecNets Table 2b"."""
        return f"{self.paper} Table {self.rows[0].table}" if self.rows else self.name


def load_row(conf_dir: Path, preset: str) -> PaperRow:
    node = OmegaConf.load(conf_dir / "experiment" / f"{preset}.yaml").paper
    numbers = tuple(PaperNumber(str(v.dataset), str(v.metric), float(v.value))
                    for v in node["values"])
    params = node.get("params")
    return PaperRow(preset, str(node.paper), str(node.table), str(node.row), numbers,
                    None if params is None else int(params), int(node.get("decimals", 2)))


def load_tables(conf_dir: Path) -> list[PaperTable]:
    """Every ``conf/table/<paper>/<table>.yaml``, in the order of the papers' tables."""
    tables = []
    for path in sorted((conf_dir / "table").glob("*/*.yaml"), key=_table_order):
        cfg = OmegaConf.load(path)
        presets = str(cfg.hydra.sweeper.params.experiment).split(",")
        title = next((line.lstrip("# ").strip() for line in path.read_text().splitlines()
                      if line.startswith("# ") and "@package" not in line), "")
        tables.append(PaperTable(
            f"{path.parent.name}/{path.stem}", title,
            tuple(load_row(conf_dir, p.strip()) for p in presets if p.strip())))
    return tables


def _table_order(path: Path) -> tuple[int, str, str]:
    papers = ("rcnn", "crnn", "recnet")
    paper = path.parent.name
    return (papers.index(paper) if paper in papers else len(papers), paper,
            path.stem)


__all__ = ["PaperNumber", "PaperRow", "PaperTable", "load_row", "load_tables"]
