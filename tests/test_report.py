"""``rcnnexp report``: real runs in, the papers' tables with ours beside them out.

The runs are small but real: a paper's table swept over two seeds (RCNN Table 4 on MNIST
files that hold real handwriting), a RecNets row, and a plain sweep of the digits.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import struct
from pathlib import Path

import pytest
from conftest import CPU, QUICK, assert_clean_error, run_cli, train_run
from tiny_data import TINY_OVERRIDES, write_cifar100, write_mnist_digits

from rcnnexp.report.interval import NOT_RUN, REPRODUCED, Z95

TINY_MNIST_TEST = 360  # tiny_data.write_mnist_digits: the last 360 of 1,797 digits
TINY_RCNN = ("model.K=4", "model.T=1", "trainer.epochs=2", "trainer.batch_size=64",
             "trainer.progress=false", "dataset.download=false", CPU)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """outputs/: RCNN Table 4 x 2 seeds (two stages each), a RecNets Table 4 row, and a
    sweep of the digits over model.K and the seed."""
    root = tmp_path_factory.mktemp("report")
    write_mnist_digits(root / "data")
    write_cifar100(root / "data")
    outputs = root / "outputs"
    proc = run_cli("train", "-m", "table=rcnn/t4", "trainer.seed=0,1",
                   f"dataset.root={root / 'data'}", *TINY_RCNN,
                   f"hydra.sweep.dir={outputs / 'table4'}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    train_run(outputs / "recnet", "experiment=recnet/t4_30_60", f"dataset.root={root / 'data'}",
              "dataset.download=false", "model.S=[2,2,2]", "model.d=[2,2,2]",
              "trainer.epochs=1", "schedule.restarts=[]", "trainer.batch_size=16",
              "trainer.progress=false", *TINY_OVERRIDES["cifar100"])
    proc = run_cli("train", "-m", *QUICK, "model.K=4,8", "trainer.seed=0,1",
                   f"hydra.sweep.dir={outputs / 'sweep'}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return outputs


@pytest.fixture(scope="module")
def report(runs: Path) -> Path:
    out = runs.parent / "report"
    proc = run_cli("report", str(runs), f"out={out}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"report: {out / 'README.md'}" in proc.stdout
    return out


def results_of(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]


def rows_csv(report: Path) -> list[dict[str, str]]:
    with open(report / "rows.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_rows_number_is_the_mean_and_std_of_its_runs(runs: Path, report: Path) -> None:
    mine = [r for r in results_of(runs / "table4") if r["experiment"] == "rcnn/t4_rcnn32"]
    errors = [r["test_error"] for r in mine]
    assert len(errors) == 2 and [r["stage"] for r in mine] == ["retrain", "retrain"]
    [row] = [r for r in rows_csv(report) if r["preset"] == "rcnn/t4_rcnn32"]
    assert (row["table"], row["dataset"], row["metric"], float(row["paper_value"])) == (
        "rcnn/t4", "mnist", "test_error", 0.42)
    assert int(row["n"]) == 2
    assert float(row["mean"]) == pytest.approx(statistics.fmean(errors), abs=1e-12)
    assert float(row["std"]) == pytest.approx(statistics.stdev(errors), abs=1e-12)
    assert float(row["difference"]) == pytest.approx(statistics.fmean(errors) - 0.42, abs=1e-12)
    readme = (report / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("| RCNN-32 | mnist |"))
    assert (f"| {statistics.fmean(errors):.2f} ± {statistics.stdev(errors):.2f}† | 2 | "
            f"{TINY_MNIST_TEST} | " in line)  # †: these tiny runs changed the preset (model.K=4)


def test_a_rows_interval_is_its_test_sets_error_and_its_seeds_spread(runs: Path,
                                                                    report: Path) -> None:
    mine = [r for r in results_of(runs / "table4") if r["experiment"] == "rcnn/t4_rcnn32"]
    assert [r["test_images"] for r in mine] == [TINY_MNIST_TEST] * 2  # recorded by each run
    assert [(r["precision"], r["tf32"]) for r in mine] == [("fp32", False)] * 2  # on CPU
    [row] = [r for r in rows_csv(report) if r["preset"] == "rcnn/t4_rcnn32"]
    mean, std = float(row["mean"]), float(row["std"])
    p = mean / 100
    assert float(row["se_test"]) == pytest.approx(100 * math.sqrt(p * (1 - p) / 360), abs=1e-9)
    assert float(row["se_seeds"]) == pytest.approx(std / math.sqrt(2), abs=1e-9)
    se = float(row["se"])
    assert se == pytest.approx(math.hypot(float(row["se_test"]), float(row["se_seeds"])))
    low, high = float(row["ci95_low"]), float(row["ci95_high"])
    assert (low, high) == pytest.approx((mean - Z95 * se, mean + Z95 * se), abs=1e-9)
    if low <= 0.42 <= high:
        assert row["verdict"] == REPRODUCED
    else:
        side = "above" if mean > 0.42 else "below"
        assert row["verdict"].startswith(f"ours {side} the paper by {abs(mean - 0.42) / se:.1f} SE")
    readme = (report / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("| RCNN-32 | mnist |"))
    assert f"| [{low:.2f}, {high:.2f}] | {mean - 0.42:+.2f} | {row['verdict']} |" in line


def test_a_row_run_other_than_its_preset_says_how_under_its_table(runs: Path,
                                                                 report: Path) -> None:
    readme = (report / "README.md").read_text()
    table4 = readme.split("### RCNN Table 4", 1)[1].split("\n### ", 1)[0]
    assert "Runs († departs from its row's protocol, as listed):" in table4
    # job 0, in a folder named by its row and seed (a preset's / made safe for a path)
    job = next(line for line in table4.splitlines() if line.startswith("- `")
               and "table4/0_experiment=rcnn-t4_rcnn32,trainer.seed=0`" in line)
    assert ": changed on the command line: `model.K=4" in job and "trainer.epochs=2" in job
    assert "composes otherwise today" not in job  # the preset is as the run composed it
    changes = job.split(": changed on the command line: ", 1)[1]
    assert "trainer.seed" not in changes and "dataset.root" not in changes  # no protocol's


def test_every_row_of_every_table_is_listed_run_or_not(report: Path) -> None:
    rows = rows_csv(report)
    assert len({r["preset"] for r in rows}) == 69
    idle = [r for r in rows if r["table"] == "rcnn/t1"]
    assert len(idle) == 7 and {(r["n"], r["verdict"]) for r in idle} == {("0", NOT_RUN)}
    readme = (report / "README.md").read_text()
    assert "Not run yet:" in readme and "RCNN Table 1 (`table=rcnn/t1`, 7 rows)" in readme
    for row in ("RCNN-64", "RCNN-96"):  # run in this table: with their own numbers
        assert f"| {row} | mnist | test_error |" in readme


def test_a_recnet_row_is_compared_on_its_dataset_and_drawn_by_size(runs: Path,
                                                                   report: Path) -> None:
    results = json.loads((runs / "recnet" / "results.json").read_text())
    [row] = [r for r in rows_csv(report)
             if r["preset"] == "recnet/t4_30_60" and r["dataset"] == "cifar100"]
    assert float(row["mean"]) == pytest.approx(results["test_top1"], abs=1e-12)
    assert row["std"] == "" and row["n"] == "1"
    assert "recnet-size.png" in (report / "README.md").read_text()


def test_any_sweep_gets_its_swept_keys_against_the_final_metrics_and_each_settings_spread(
        runs: Path, report: Path) -> None:
    readme = (report / "README.md").read_text()
    assert "## Sweeps" in readme and "swept: `model.K`, `trainer.seed`" in readme
    by_job = {r["run_dir"].rsplit("/", 1)[1]: r for r in results_of(runs / "sweep")}
    for job, r in by_job.items():
        model_k = next(o for o in r["overrides"] if o.startswith("model.K=")).split("=")[1]
        seed = next(o for o in r["overrides"] if o.startswith("trainer.seed=")).split("=")[1]
        assert f"| {job} | {model_k} | {seed} | {r['test_top1']:.2f} |" in readme
    assert any(report.glob("sweep-*-model-k.png"))
    assert "over the 4 jobs" not in readme  # K=4 and K=8 are two settings, never pooled
    for k in ("4", "8"):  # each setting's spread over its two seeds
        top1 = [r["test_top1"] for r in by_job.values() if f"model.K={k}" in r["overrides"]]
        assert (f"- `model.K={k}`: mean {statistics.fmean(top1):.2f} ± "
                f"{statistics.stdev(top1):.2f} (sample std), min {min(top1):.2f}, "
                f"max {max(top1):.2f} over 2 jobs.") in readme


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_every_figure_is_a_png_of_plausible_size_and_linked(report: Path) -> None:
    readme = (report / "README.md").read_text()
    figures = sorted(report.glob("*.png"))
    names = {p.name for p in figures}
    assert {"table-rcnn-t4.png", "table-recnet-t4.png", "recnet-size.png"} <= names
    assert any(n.startswith("curves-") for n in names)
    for path in figures:
        width, height = png_size(path)
        assert 300 <= width <= 4000 and 250 <= height <= 3000, (path.name, width, height)
        assert path.stat().st_size > 5_000, path.name  # something is drawn
        assert f"]({path.name})" in readme, path.name


def test_a_report_named_as_a_markdown_file_keeps_its_figures_beside_it(runs: Path,
                                                                       tmp_path: Path) -> None:
    proc = run_cli("report", str(runs / "recnet"), f"out={tmp_path / 'docs' / 'results.md'}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (tmp_path / "docs" / "results.md").read_text()
    links = [line.split("](")[1].rstrip(")") for line in text.splitlines() if "![" in line]
    assert links and all(link.startswith("results/") for link in links)
    assert all((tmp_path / "docs" / link).is_file() for link in links)
    assert (tmp_path / "docs" / "results" / "rows.csv").is_file()


def test_report_refuses_what_it_cannot_do_and_overwrites_nothing(report: Path,
                                                                 tmp_path: Path) -> None:
    before = (report / "README.md").read_bytes()
    proc = run_cli("report", str(report.parent / "outputs"), f"out={report}")
    assert_clean_error(proc, f"out={report}", "already holds")
    assert (report / "README.md").read_bytes() == before
    assert_clean_error(run_cli("report", str(tmp_path / "nowhere")), "no such directory")
    (tmp_path / "empty").mkdir()
    assert_clean_error(run_cli("report", str(tmp_path / "empty"), f"out={tmp_path / 'r'}"),
                       "no finished run")
    assert not (tmp_path / "r").exists()


def test_resuming_a_run_is_no_change_from_its_preset() -> None:
    from rcnnexp.report.runs import Run

    run = Run(Path("r"), {"overrides": ["experiment=rcnn/t4_rcnn32", "trainer.seed=1",
                                        "trainer.resume=auto", "hydra.run.dir=r",
                                        "trainer.epochs=3"]}, [], [], None)
    assert run.changes() == ["trainer.epochs=3"]
