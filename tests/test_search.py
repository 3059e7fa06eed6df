"""A search (``rcnnexp train -m search=...``, conf/search): Hydra's Optuna sweeper choosing
values on validation top-1 alone, every trial an ordinary job, and its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import NEEDS_OPTUNA, QUICK, REPO, compose_config, job_dir, run_cli
from omegaconf import OmegaConf

from rcnnexp.data.tensor import training_share

# two one-epoch trials of RCNN-8 on the digits, one after the other in the sweep's process
TINY_SEARCH = ("search=rcnn_mnist", *QUICK, "hydra/launcher=basic", "hydra.sweeper.n_trials=2",
               "hydra.sweeper.n_jobs=1", "dataset.train_fraction=0.5")


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep = tmp_path_factory.mktemp("search") / "sweep"
    proc = run_cli("train", "-m", *TINY_SEARCH, f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return sweep


def trials(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]


@NEEDS_OPTUNA
def test_a_search_records_its_best_trial_by_validation_top1(search: Path) -> None:
    results = OmegaConf.load(search / "optimization_results.yaml")
    scores = [t["best_val_top1"] for t in trials(search)]
    assert len(scores) == 2
    assert results.best_value == pytest.approx(max(scores))
    assert set(results.best_params) >= {"optim.lr", "dataset.scale", "model.dropout"}


@NEEDS_OPTUNA
def test_a_trial_never_evaluates_the_test_split(search: Path) -> None:
    for trial in trials(search):
        assert trial["test_top1"] is None and trial["best_val_top1"] is not None
    header = (job_dir(search, 0) / "metrics.csv").read_text().splitlines()[0]
    assert "val_top1" in header and "test" not in header


@NEEDS_OPTUNA
def test_a_trial_trains_on_the_share_of_the_training_split_it_is_given(search: Path) -> None:
    whole = compose_config(["dataset=digits"])  # 1,259 training images
    assert whole.dataset.train_fraction == 1.0
    for trial in trials(search):  # half of each of the ten classes, each rounded
        assert abs(trial["train_images"] - 1259 / 2) <= 5


@NEEDS_OPTUNA
def test_the_report_ranks_a_searchs_trials_and_names_the_best(search: Path,
                                                             tmp_path: Path) -> None:
    proc = run_cli("report", str(search), f"out={tmp_path / 'report'}")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "report" / "README.md").read_text()
    section = text[text.index("## Searches"):text.index("## Every run")]
    best = OmegaConf.load(search / "optimization_results.yaml")
    assert "2 trials, ended; maximised: `best_val_top1`" in section
    assert f"best_val_top1 {best.best_value:.2f}" in section
    assert (tmp_path / "report" / "search-0.png").is_file()
    assert "## Sweeps" not in text  # the search is not listed a second time as a sweep


def test_a_training_share_is_class_stratified_and_the_same_every_time() -> None:
    labels = torch.arange(1000) % 10
    share = training_share(labels, 0.25)
    assert torch.equal(share, training_share(labels, 0.25))
    assert torch.bincount(labels[share]).tolist() == [25] * 10


@NEEDS_OPTUNA
def test_a_searchs_dry_run_checks_both_ends_of_its_space() -> None:
    proc = run_cli("train", "-m", "experiment=rcnn/t4_rcnn32", "search=rcnn_mnist", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    first, last = proc.stdout.splitlines()[:2]
    assert "optim.lr=0.0003" in first and "trainer.batch_size=16" in first
    assert "optim.lr=0.1" in last and "trainer.batch_size=128" in last


# each search preset with a row of the recipe it searches
SEARCHES = {"rcnn_mnist": "rcnn/t4_rcnn32", "rcnn": "rcnn/t2_rcnn96",
            "recnet": "recnet/t3_60_1280"}


def test_every_search_preset_is_tested() -> None:
    presets = {p.stem for p in (REPO / "conf" / "search").glob("*.yaml")}
    assert presets == set(SEARCHES)


@NEEDS_OPTUNA
@pytest.mark.parametrize(("search", "experiment"), sorted(SEARCHES.items()))
def test_every_search_runs_valid_trials_on_its_recipes_row(search: str, experiment: str) -> None:
    proc = run_cli("train", "-m", f"experiment={experiment}", f"search={search}", "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "invalid" not in proc.stdout


@pytest.mark.parametrize("value", ["0", "1.5"])
def test_a_training_share_outside_0_1_is_refused(value: str) -> None:
    proc = run_cli("train", f"dataset.train_fraction={value}")
    assert proc.returncode == 2
    assert f"dataset.train_fraction must be in (0, 1], got {float(value)}" in proc.stderr


def test_a_search_maximises_validation_numbers_only() -> None:
    proc = run_cli("train", "optimized_metric=test_top1", "--cfg", "job")
    assert proc.returncode == 2
    assert "optimized_metric" in proc.stderr and "best_val_top1" in proc.stderr
