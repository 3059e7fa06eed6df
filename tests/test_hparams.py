"""A sweep you can read: the table it ends with, its jobs' folders, the runs TensorBoard lists
and its HPARAMS tab comparing the jobs (read back from the event files a sweep writes,
through TensorBoard's own hparams plugin, what the browser is served), and curves that line
up on an epoch axis."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import CPU, hparams_table, job_dir, run_cli, scalars, tensorboard_runs

from rcnnexp.engine.hparams import experiment, hparams_of

# two epochs of each model at its digits preset's batch size (RCNN 32, RecNet 64) and
# learning rate, on half the training images
SWEEP_ARGS = ("trainer.epochs=2", "dataset.train_fraction=0.5", "trainer.progress=false", CPU)


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, subprocess.CompletedProcess[str]]:
    sweep = tmp_path_factory.mktemp("sweep") / "models"
    proc = run_cli("train", "-m", "model=rcnn,recnet_30_60", *SWEEP_ARGS,
                   f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"tensorboard --logdir {sweep}\n" in proc.stdout
    return sweep, proc


@pytest.fixture(scope="module")
def model_sweep(sweep_run: tuple[Path, subprocess.CompletedProcess[str]]) -> Path:
    return sweep_run[0]


def test_a_sweep_ends_with_its_jobs_best_first_their_swept_values_numbers_and_folders(
        sweep_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    sweep, proc = sweep_run
    table = proc.stdout[proc.stdout.index("sweep done"):].splitlines()[1:4]
    assert table[0].split() == ["job", "swept", "values", "test", "top-1", "best", "val",
                                "top-1", "epochs", "folder"]
    results = {r["model"]: r for r in map(json.loads, map(Path.read_text,
                                                          sweep.glob("*/results.json")))}
    rows = [line.split() for line in table[1:]]
    assert [row[1] for row in rows] == sorted(
        ["model=rcnn", "model=recnet_30_60"],
        key=lambda v: -results[v.partition("=")[2]]["best_val_top1"])  # best first
    for job, values, test, val, epochs, folder in rows:
        r = results[values.partition("=")[2]]
        assert (test, val, epochs) == (f"{r['test_top1']:.2f}", f"{r['best_val_top1']:.2f}", "2")
        assert (sweep / folder).resolve() == Path(r["run_dir"]).resolve()
        assert folder == f"{job[1:]}_{values}"


def test_job_folders_and_tensorboard_runs_carry_the_swept_values_and_no_run_is_the_sweep(
        model_sweep: Path) -> None:
    assert {p.name for p in model_sweep.iterdir() if not p.name.startswith(".")} == {
        "0_model=rcnn", "1_model=recnet_30_60", "multirun.yaml"}
    assert tensorboard_runs(model_sweep) == {"0_model=rcnn/tb", "0_model=rcnn/tb/final",
                                             "1_model=recnet_30_60/tb",
                                             "1_model=recnet_30_60/tb/final"}
    assert hparams_table(model_sweep).rows.keys() == {"0_model=rcnn/tb",
                                                      "1_model=recnet_30_60/tb"}


def test_a_sweep_over_models_shows_each_models_keys_and_what_differs_first(
        model_sweep: Path) -> None:
    table = hparams_table(model_sweep)
    keys = [key for key, _ in table.columns]
    assert {"model.K", "model.T", "model.S", "model.d"} <= set(keys)  # both families' keys
    first = [key for key, differs in table.columns if differs]
    assert keys[:len(first)] == first  # what tells the jobs apart comes first
    # the presets' learning rate and batch size included, each model's own keys not: the
    # model tells those apart
    assert set(first) == {"model", "model_dataset", "optim.lr", "trainer.batch_size"}
    assert set(first) <= set(table.shown)
    rows = {row["model"]: row for row in table.rows.values()}
    assert rows.keys() == {"rcnn", "recnet_30_60"}
    assert "model.S" not in rows["rcnn"]  # rcnn_digits
    assert rows["recnet_30_60"]["model.S"] == "[6, 12, 12]"


def test_hparams_shows_integers_as_integers(model_sweep: Path) -> None:
    rows = {row["model"]: row for row in hparams_table(model_sweep).rows.values()}
    # TensorBoard prints a number with five significant digits: 32 would read 32.000
    assert rows["rcnn"]["model.K"] == "32" and rows["rcnn"]["trainer.batch_size"] == "32"
    assert rows["recnet_30_60"]["trainer.batch_size"] == "64"
    assert rows["rcnn"]["optim.lr"] == 0.01  # a float stays a number, for the tab's plots


def test_per_epoch_curves_line_up_across_batch_sizes_on_an_epoch_axis(
        model_sweep: Path) -> None:
    rcnn, recnet = (scalars(job_dir(model_sweep, n) / "tb") for n in (0, 1))
    assert [s for s, _ in rcnn["val/top1"]] != [s for s, _ in recnet["val/top1"]]  # steps
    for tag in ("val/top1", "test/top1", "train/top1", "train/loss", "train/lr"):
        assert [s for s, _ in rcnn[f"epoch/{tag}"]] == [1, 2], tag
        assert [s for s, _ in recnet[f"epoch/{tag}"]] == [1, 2], tag
    # the same values as at each epoch's last step
    assert [v for _, v in rcnn["epoch/val/top1"]] == [v for _, v in rcnn["val/top1"]]


def test_a_sweeps_metric_columns_are_each_jobs_results(model_sweep: Path) -> None:
    table = hparams_table(model_sweep)
    assert table.metrics[:3] == ["test_top1", "test_top5", "best_val_top1"]
    for job in (job_dir(model_sweep, 0), job_dir(model_sweep, 1)):
        results = json.loads((job / "results.json").read_text())
        row = table.rows[f"{job.name}/tb"]
        for name in ("test_top1", "test_top5", "best_val_top1", "train_top1"):
            assert row[name] == pytest.approx(results[name], abs=1e-4), name


def test_no_chart_in_scalars_is_a_lone_point(model_sweep: Path) -> None:
    for job in (job_dir(model_sweep, 0), job_dir(model_sweep, 1)):
        curves = scalars(job / "tb")
        final = scalars(job / "tb" / "final")
        assert not [tag for tag in curves if tag.startswith("hparams/")]
        assert final.keys() <= curves.keys()  # the final values are points on real curves
        assert "test/top1" in final


def test_keys_a_job_sets_differently_differ_and_keys_only_some_jobs_have_alike_do_not(
        ) -> None:
    jobs = [{"model": "rcnn", "dataset": "digits", "dataset.crop": 0, "model.K": 16,
             "model.dropout": 0.5, "model.lrn": True, "name": "run"},
            {"model": "rcnn", "dataset": "digits", "dataset.crop": 0, "model.K": 32,
             "model.dropout": 0.5, "model.lrn": True, "name": "run", "model.extra": "x"},
            {"model": "recnet", "dataset": "digits", "dataset.crop": 0, "name": "run"}]
    from tensorboard.plugins.hparams import plugin_data_pb2

    summary = experiment(jobs)
    content = summary.value[0].metadata.plugin_data.content
    infos = plugin_data_pb2.HParamsPluginData.FromString(content).experiment.hparam_infos
    differs = {info.name for info in infos if info.differs}
    assert differs == {"model", "model.K"}
    assert [info.name for info in infos] == list(dict.fromkeys([*jobs[0], *jobs[1]]))
    domain = {info.name: [v.string_value for v in info.domain_discrete.values] for info in infos}
    assert domain["model.K"] == ["16", "32"]  # integers as text, in the order of their numbers


def test_a_runs_row_holds_its_chosen_options_and_values_but_no_bookkeeping() -> None:
    plain = {"name": "run", "model": {"_target_": "x.RCNN", "K": 8, "S": [1, 2]},
             "trainer": {"seed": 0, "workers": 4, "resume": None}, "paper": {"row": "a"}}
    choices = {"model": "rcnn", "schema/model@model": "rcnn", "experiment": None,
               "hydra/launcher": "basic", "dataset": "digits"}
    assert hparams_of(plain, choices) == {"model": "rcnn", "dataset": "digits", "name": "run",
                                          "model.K": 8, "model.S": "[1, 2]",
                                          "trainer.seed": 0}
