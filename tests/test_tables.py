"""A paper's whole table as one sweep: ``rcnnexp train -m table=<paper>/<table>``.

Each ``conf/table`` option lists its table's rows (experiment presets) as the sweeper's
params, and the datasets or SUN397 partitions the paper reports them on; ``--dry-run``
lists the jobs without running anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import assert_clean_error, run_cli
from test_experiments import PAPER_ROWS
from tiny_checksums import PER_JOB_TARGET
from tiny_data import write_cifar100

from rcnnexp.cli import CONF_DIR, compose, sweep_jobs
from rcnnexp.config import validate
from rcnnexp.report.catalogue import load_tables

TABLES = {t.name: t for t in load_tables(CONF_DIR)}
# what the stand-in checkpoints of C-RNN's fine-tuning rows need to compose
PRETRAINED = ("finetune.pretrained.alexnet=alexnet.pt", "finetune.pretrained.crnn=crnn.pt")


def test_every_table_of_the_three_papers_is_an_option() -> None:
    assert sorted(TABLES) == [
        "crnn/t1", "crnn/t2", "crnn/t3", "crnn/t4", "rcnn/t1", "rcnn/t2", "rcnn/t3", "rcnn/t4",
        "rcnn/t5", "recnet/t2a", "recnet/t2b", "recnet/t2c", "recnet/t2d", "recnet/t3",
        "recnet/t4"]


def test_each_row_is_in_its_papers_table_and_only_there() -> None:
    listed = [(row.preset, row.paper, row.table) for t in TABLES.values() for row in t.rows]
    assert sorted(listed) == sorted((p, paper, table) for p, paper, table, _, _ in PAPER_ROWS)
    for table in TABLES.values():
        assert {row.table for row in table.rows} == {table.name.split("/t")[1]}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_job_of_every_table_composes_and_validates(name: str) -> None:
    extra = PRETRAINED if name in ("crnn/t2", "crnn/t3") else ()
    jobs = sweep_jobs([f"table={name}", *extra], multirun=True)
    table = TABLES[name]
    datasets = {n.dataset for row in table.rows for n in row.numbers}
    partitions = 10 if name == "crnn/t2" else 1
    per_row = (len(datasets) if name.startswith("recnet/") else 1) * partitions
    assert len(jobs) == len(table.rows) * per_row
    for job in jobs:
        typed = validate(compose(job))
        assert typed.paper is not None and typed.paper.table == table.rows[0].table
        if name.startswith("recnet/"):  # each row on each dataset it reports
            assert typed.paper.row in {r.row for r in table.rows}


def test_a_dry_run_lists_rows_times_seeds_and_writes_nothing(tmp_path: Path) -> None:
    sweep_dir, data = tmp_path / "sweep", tmp_path / "data"
    proc = run_cli("train", "-m", "table=rcnn/t4", "trainer.seed=0,1,2", "--dry-run",
                   f"hydra.sweep.dir={sweep_dir}", f"dataset.root={data}")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("#")]
    assert len(lines) == 9
    assert "9 jobs, 9 lacking data (dry run: nothing was run)" in proc.stdout
    assert lines[0].startswith("#0 experiment=rcnn/t4_rcnn32 table=rcnn/t4 trainer.seed=0")
    assert lines[8].startswith("#8 experiment=rcnn/t4_rcnn96 table=rcnn/t4 trainer.seed=2")
    assert f"lacks data: {data / 'MNIST' / 'raw'} (no train-images-idx3-ubyte" in lines[8]
    assert not sweep_dir.exists() and not data.exists()  # nothing written, nothing fetched


def test_a_dry_run_names_the_jobs_that_would_fail_to_validate() -> None:
    proc = run_cli("train", "-m", "table=crnn/t3", "--dry-run")
    assert proc.returncode == 2
    assert "4 jobs, 4 invalid" in proc.stdout and "finetune.checkpoint" in proc.stdout


def test_a_sun397_row_sweeps_the_ten_partitions() -> None:
    proc = run_cli("train", "-m", "experiment=crnn/t2_crnn_finetune", "finetune.checkpoint=c.pt",
                   "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    partitions = [line.split("dataset.partition=")[1].split()[0]
                  for line in proc.stdout.splitlines() if line.startswith("#")]
    assert partitions == [str(p) for p in range(1, 11)]


def test_a_table_without_multirun_is_refused(tmp_path: Path) -> None:
    proc = run_cli("train", "table=rcnn/t4", f"hydra.run.dir={tmp_path}/run")
    assert_clean_error(proc, "table=rcnn/t4", "add -m")
    assert not (tmp_path / "run").exists()


def test_rows_whose_data_is_missing_fail_one_by_one_while_the_others_run(tmp_path: Path
                                                                          ) -> None:
    write_cifar100(tmp_path / "data")  # CIFAR-100 only: the CIFAR-10 column has no files
    sweep_dir = tmp_path / "sweep"
    proc = run_cli("train", "-m", "table=recnet/t2d", f"dataset.root={tmp_path}/data",
                   "dataset.download=false", PER_JOB_TARGET, "model.S=[2,2,2]", "model.d=[2,2,2]",
                   "trainer.epochs=1", "schedule.restarts=[]", "trainer.batch_size=16",
                   "trainer.progress=false", f"hydra.sweep.dir={sweep_dir}")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 of 4 jobs failed" in proc.stderr and "CIFAR-10 not found" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    finished = sorted(p.parent.name for p in sweep_dir.glob("*/results.json"))
    assert len(finished) == 2
