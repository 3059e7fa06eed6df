"""The report's verdict and its †, on hand-computed cases and on run directories.

The verdict: our mean's 95 % interval, mean ± 1.96·SE with SE = sqrt(SE_test² + s²/n)
(SE_test = 100·sqrt(p(1-p)/test images) at our mean, the same test set for every seed; s/sqrt(n)
the seeds'), holds the paper's number or not. The numbers below are worked by hand (the
arithmetic is in the comments), not by the code under test.

The †: a run that departs from its row's protocol (its command line, a precision other than
the papers' fp32, a config its preset no longer composes to) is marked, with the reason.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import REPO, write_run_files

from rcnnexp.report import write_report
from rcnnexp.report.aggregate import match_rows
from rcnnexp.report.catalogue import load_tables
from rcnnexp.report.interval import (
    NO_INTERVAL,
    NOT_RUN,
    OFFICIAL_TEST_IMAGES,
    REPRODUCED,
    binomial_se,
    interval,
    verdict,
)
from rcnnexp.report.protocol import departures
from rcnnexp.report.runs import Run, load_run

CONF = REPO / "conf"
PRESET = "experiment=rcnn/t4_rcnn32"  # RCNN Table 4, RCNN-32: the paper's 0.42 % on MNIST
MNIST_TEST = 10_000


def run_of(**results: object) -> Run:
    """A run as the report holds one, from its results.json alone."""
    return Run(Path("run"), dict(results), [], [], None)


# -- the interval and the verdict ----------------------------------------------------------------
def test_one_seed_on_mnist_has_its_test_sets_binomial_error() -> None:
    # sqrt(0.005 * 0.995 / 10000) = 7.0534e-4: 0.0705 points; x 1.96 = 0.1382
    ci = interval([0.50], MNIST_TEST)
    assert ci is not None and ci.n == 1 and ci.se_seeds == 0.0
    assert ci.se == pytest.approx(0.070534, abs=1e-6)
    assert ci.half_width == pytest.approx(0.138246, abs=1e-6)
    assert (ci.low, ci.high) == pytest.approx((0.361754, 0.638246), abs=1e-6)


def test_a_row_whose_interval_holds_the_papers_number_is_reproduced() -> None:
    # 0.50 ± 0.138 is [0.362, 0.638], which holds 0.42 (±0.5 pt held far more)
    assert verdict(0.42, interval([0.50], MNIST_TEST), "test_error") == REPRODUCED


def test_a_row_outside_says_which_side_ours_is_on_and_by_how_many_standard_errors() -> None:
    # SE = sqrt(0.0136 * 0.9864 / 10000) = 0.11582 points; (1.36 - 0.42) / 0.11582 = 8.12
    ours = interval([1.36], MNIST_TEST)
    assert ours is not None and ours.z(0.42) == pytest.approx(8.1158, abs=1e-4)
    assert verdict(0.42, ours, "test_error") == "ours above the paper by 8.1 SE (worse)"
    # SE = sqrt(0.002 * 0.998 / 10000) = 0.044677; (0.42 - 0.20) / 0.044677 = 4.92
    assert verdict(0.42, interval([0.20], MNIST_TEST), "test_error") == (
        "ours below the paper by 4.9 SE (better)")


def test_an_accuracy_above_the_papers_is_better_and_below_it_worse() -> None:
    # an accuracy's SE is its error's: 98.64 % right is 1.36 % wrong, 8.1 SE from 99.58
    assert verdict(99.58, interval([98.64], MNIST_TEST), "test_top1") == (
        "ours below the paper by 8.1 SE (worse)")
    # SE = sqrt(0.001 * 0.999 / 10000) = 0.031607; (99.90 - 99.58) / 0.031607 = 10.12
    assert verdict(99.58, interval([99.90], MNIST_TEST), "test_top1") == (
        "ours above the paper by 10.1 SE (better)")


def test_over_seeds_the_test_sets_error_stays_whole_and_the_seeds_spread_averages_out() -> None:
    # three seeds 0.50, 0.60, 0.70: mean 0.60, s = 0.10, s/sqrt(3) = 0.057735;
    # SE_test = sqrt(0.006 * 0.994 / 10000) = 0.077227 (not divided by 3: one test set);
    # SE = sqrt(0.077227² + 0.057735²) = 0.096423; 1.96 SE = 0.188989
    ci = interval([0.50, 0.60, 0.70], MNIST_TEST)
    assert ci is not None and ci.n == 3 and ci.mean == pytest.approx(0.60)
    assert ci.se_test == pytest.approx(0.077227, abs=1e-6)
    assert ci.se_seeds == pytest.approx(0.057735, abs=1e-6)
    assert ci.se == pytest.approx(0.096423, abs=1e-6)
    assert (ci.low, ci.high) == pytest.approx((0.411012, 0.788988), abs=1e-6)
    # 0.42 is inside: reproduced; dividing SE_test by the seeds too (SE 0.05567, low end
    # 0.4909) would have called it a miss
    assert verdict(0.42, ci, "test_error") == REPRODUCED
    # (0.60 - 0.40) / 0.096423 = 2.07
    assert verdict(0.40, ci, "test_error") == "ours above the paper by 2.1 SE (worse)"


def test_without_a_test_set_size_there_is_no_interval_and_without_runs_no_verdict() -> None:
    assert interval([0.5], None) is None and interval([], MNIST_TEST) is None
    assert verdict(0.42, None, "test_error") == NO_INTERVAL
    assert verdict(0.42, None, "test_error", ran=False) == NOT_RUN


def test_a_test_set_of_no_images_is_refused_by_name_and_value() -> None:
    with pytest.raises(ValueError, match="test_images=0"):
        binomial_se(1.0, 0)


def test_a_runs_test_set_size_is_what_it_recorded_else_its_datasets_official_one() -> None:
    assert run_of(dataset="mnist", test_images=360).test_images == 360
    # written before runs recorded it: the official test set of its dataset
    assert run_of(dataset="mnist").test_images == OFFICIAL_TEST_IMAGES["mnist"] == 10_000
    assert run_of(dataset="svhn").test_images == 26_032
    assert run_of(dataset="digits").test_images is None  # a fraction of 1,797: not known
    assert run_of(dataset="mnist", test_images=None).test_images is None  # no test split


def test_a_table_row_takes_its_interval_from_its_runs() -> None:
    runs = [run_of(dataset="mnist", test_error=e, test_images=MNIST_TEST,
                   paper={"paper": "RCNN", "table": "4", "row": "RCNN-32"})
            for e in (0.50, 0.60, 0.70)]
    [row] = [r for r in match_rows(load_tables(CONF), runs) if r.runs]
    assert (row.row.row, row.number.value, row.n, row.test_images) == ("RCNN-32", 0.42, 3,
                                                                        MNIST_TEST)
    assert row.interval is not None and row.interval.se == pytest.approx(0.096423, abs=1e-6)
    assert row.verdict == REPRODUCED


# -- the dagger -----------------------------------------------------------------------------------
def reasons(run_dir: Path) -> list[str]:
    run = load_run(run_dir)
    assert run is not None
    return departures([run], CONF)[run.directory]


def test_a_run_as_its_preset_stands_today_in_fp32_has_no_dagger(tmp_path: Path) -> None:
    run_dir = write_run_files(tmp_path / "run", [PRESET, "trainer.seed=1"], dataset="mnist",
                              test_error=0.5)
    assert reasons(run_dir) == []


def test_keys_that_only_describe_a_run_or_that_it_predates_are_no_departure(
        tmp_path: Path) -> None:
    run_dir = write_run_files(tmp_path / "run", [PRESET], dataset="mnist", config_changes={
        "trainer.workers": 0, "trainer.progress": False, "trainer.device": "cpu",
        "trainer.tf32": None})  # a run written before trainer.tf32 existed
    assert reasons(run_dir) == []


def test_a_run_in_bf16_or_tf32_is_marked_for_its_precision(tmp_path: Path) -> None:
    bf16 = write_run_files(tmp_path / "bf16", [PRESET], dataset="mnist", device="cuda:0",
                           precision="bf16", tf32=True)
    assert reasons(bf16) == ["trained in precision=bf16 (mixed precision) on cuda:0; the "
                             "papers trained in fp32"]
    tf32 = write_run_files(tmp_path / "tf32", [PRESET], dataset="mnist", device="cuda:0",
                           tf32=True)
    assert reasons(tf32) == ["TF32 products in its fp32 matmuls and convolutions on cuda:0 "
                             "(trainer.tf32=true); the papers trained in full fp32"]
    plain = write_run_files(tmp_path / "fp32", [PRESET], dataset="mnist", device="cuda:0",
                            tf32=False)
    assert reasons(plain) == []


def test_a_cuda_run_told_the_papers_fp32_on_its_command_line_has_no_dagger(
        tmp_path: Path) -> None:
    """trainer.precision and trainer.tf32 are judged by what the run trained in (results.json),
    not as command-line changes: fp32 without TF32 is the papers' arithmetic, bf16 is marked
    once, for its precision."""
    fp32 = write_run_files(tmp_path / "fp32", [PRESET, "trainer.precision=fp32",
                                               "trainer.tf32=false"], dataset="mnist",
                           device="cuda:0", tf32=False)
    assert reasons(fp32) == []
    bf16 = write_run_files(tmp_path / "bf16", [PRESET, "trainer.precision=bf16"],
                           dataset="mnist", device="cuda:0", precision="bf16", tf32=True)
    assert reasons(bf16) == ["trained in precision=bf16 (mixed precision) on cuda:0; the "
                             "papers trained in fp32"]


def test_a_cuda_run_that_predates_the_tf32_record_is_judged_by_its_stored_config(
        tmp_path: Path) -> None:
    old = write_run_files(tmp_path / "old", [PRESET], dataset="mnist", device="cuda:0")
    results = json.loads((old / "results.json").read_text())
    del results["tf32"]
    (old / "results.json").write_text(json.dumps(results))
    assert [r.split(" on ")[0] for r in reasons(old)] == [
        "TF32 products in its fp32 matmuls and convolutions"]  # trainer.tf32: true by default


def test_a_run_made_before_its_preset_changed_is_marked_with_what_changed(
        tmp_path: Path) -> None:
    # this run's config says patience 7 where the preset composes another today
    run_dir = write_run_files(tmp_path / "run", [PRESET], dataset="mnist",
                              config_changes={"schedule.patience": 7, "optim.lr": 0.5})
    [why] = reasons(run_dir)
    assert why.startswith("experiment=rcnn/t4_rcnn32 composes otherwise today")
    assert "`optim.lr: 0.5 -> " in why and "`schedule.patience: 7 -> " in why


def test_a_run_whose_preset_no_longer_composes_is_marked_not_a_crash(tmp_path: Path) -> None:
    run_dir = write_run_files(tmp_path / "run", [PRESET], dataset="mnist")
    results = json.loads((run_dir / "results.json").read_text())
    results["overrides"] = ["experiment=rcnn/t4_renamed"]
    (run_dir / "results.json").write_text(json.dumps(results))
    [why] = reasons(run_dir)
    assert why.startswith("experiment=rcnn/t4_rcnn32 no longer composes with its command line")
    assert "t4_renamed" in why


def test_a_run_without_its_stored_config_is_marked_as_unchecked(tmp_path: Path) -> None:
    run_dir = write_run_files(tmp_path / "run", [PRESET], dataset="mnist")
    (run_dir / ".hydra" / "config.yaml").unlink()
    assert reasons(run_dir) == ["no .hydra/config.yaml: not compared with "
                                "experiment=rcnn/t4_rcnn32 as it composes today"]


def test_the_report_marks_a_drifted_run_and_lists_why(tmp_path: Path) -> None:
    write_run_files(tmp_path / "runs" / "drifted", [PRESET, "trainer.seed=3"],
                    dataset="mnist", test_error=0.5, test_images=MNIST_TEST,
                    config_changes={"schedule.patience": 7})
    markdown = write_report([tmp_path / "runs"], tmp_path / "report", CONF, "rcnnexp report")
    text = markdown.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| RCNN-32 |"))
    assert "| 0.50† | 1 | 10,000 | [0.36, 0.64] | +0.08 | reproduced |" in row
    assert "Runs († departs from its row's protocol, as listed):" in text
    note = next(line for line in text.splitlines() if "drifted`:" in line)
    assert "composes otherwise today" in note and "schedule.patience: 7 -> " in note
    with open(tmp_path / "report" / "rows.csv", newline="") as fh:
        [csv_row] = [r for r in csv.DictReader(fh) if r["preset"] == "rcnn/t4_rcnn32"]
    assert csv_row["verdict"] == REPRODUCED and csv_row["test_images"] == "10000"
    assert float(csv_row["ci95_low"]) == pytest.approx(0.361754, abs=1e-6)
    assert "schedule.patience: 7 -> " in csv_row["departures"]


def test_the_shortened_mnist_run_in_results_keeps_its_dagger_and_misses_by_2_8_se(
        tmp_path: Path) -> None:
    """results/rcnn-t4-rcnn32-searched-seed0: real, shortened (no retraining, 20 epochs,
    patience 2), 0.64 % test error on MNIST's 10,000 test images."""
    shortened = REPO / "results" / "rcnn-t4-rcnn32-searched-seed0"
    markdown = write_report([shortened], tmp_path / "report", CONF, "rcnnexp report")
    text = markdown.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| RCNN-32 |"))
    assert ("| 0.64† | 1 | 10,000 | [0.48, 0.80] | +0.22 | "
            "ours above the paper by 2.8 SE (worse) |") in row
    note = next(line for line in text.splitlines() if "rcnn-t4-rcnn32-searched-seed0`:" in line)
    assert note.endswith(": changed on the command line: `trainer.retrain=false "
                         "trainer.epochs=20 schedule.patience=2`")
