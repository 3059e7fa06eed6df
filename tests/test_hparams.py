"""TensorBoard's HPARAMS tab compares a sweep's jobs: read back from the event files a
sweep writes, through TensorBoard's own hparams plugin (what the browser is served)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CPU, hparams_table, run_cli, scalars

from rcnnexp.engine.hparams import experiment, hparams_of

SWEEP_ARGS = ("trainer.epochs=1", "trainer.batch_size=128", "trainer.progress=false", CPU)


@pytest.fixture(scope="module")
def model_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep = tmp_path_factory.mktemp("sweep") / "models"
    proc = run_cli("train", "-m", "model=rcnn,recnet_30_60", *SWEEP_ARGS,
                   f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"tensorboard --logdir {sweep}\n" in proc.stdout
    return sweep


def test_a_sweep_over_models_shows_each_models_keys_and_the_choice_first(
        model_sweep: Path) -> None:
    table = hparams_table(model_sweep)
    keys = [key for key, _ in table.columns]
    assert {"model.K", "model.T", "model.S", "model.d"} <= set(keys)  # both families' keys
    first = [key for key, differs in table.columns if differs]
    assert keys[:len(first)] == first  # what tells the jobs apart comes first
    assert {"model", "dataset", "model.K", "model.S"} <= set(first)
    assert "model" in table.shown and "dataset.crop" not in first
    rows = {row["model"]: row for row in table.rows.values()}
    assert rows.keys() == {"rcnn", "recnet_30_60"}
    assert rows["rcnn"]["model.K"] == 32 and "model.S" not in rows["rcnn"]  # rcnn_digits
    assert rows["recnet_30_60"]["model.S"] == "[6, 12, 12]"


def test_a_sweeps_metric_columns_are_each_jobs_results(model_sweep: Path) -> None:
    table = hparams_table(model_sweep)
    assert table.metrics[:3] == ["test_top1", "test_top5", "best_val_top1"]
    for job in ("0", "1"):
        results = json.loads((model_sweep / job / "results.json").read_text())
        row = table.rows[f"{job}/tb"]
        for name in ("test_top1", "test_top5", "best_val_top1", "train_top1"):
            assert row[name] == pytest.approx(results[name], abs=1e-4), name


def test_no_chart_in_scalars_is_a_lone_point(model_sweep: Path) -> None:
    for job in ("0", "1"):
        curves = scalars(model_sweep / job / "tb")
        final = scalars(model_sweep / job / "tb" / "final")
        assert not [tag for tag in curves if tag.startswith("hparams/")]
        assert final.keys() <= curves.keys()  # the final values are points on real curves
        assert "test/top1" in final


def test_keys_a_job_lacks_or_sets_differently_are_marked_as_differing() -> None:
    jobs = [{"model": "rcnn", "dataset": "digits", "dataset.crop": 0, "model.K": 16,
             "model.dropout": 0.5, "model.lrn": True, "name": "run"},
            {"model": "rcnn", "dataset": "digits", "dataset.crop": 0, "model.K": 32,
             "model.dropout": 0.5, "model.lrn": True, "name": "run", "model.extra": "x"}]
    from tensorboard.plugins.hparams import plugin_data_pb2

    summary = experiment(jobs)
    content = summary.value[0].metadata.plugin_data.content
    infos = plugin_data_pb2.HParamsPluginData.FromString(content).experiment.hparam_infos
    differs = {info.name for info in infos if info.differs}
    assert differs == {"model", "dataset", "model.K", "model.extra"}
    assert [info.name for info in infos] == list(dict.fromkeys([*jobs[0], *jobs[1]]))


def test_a_runs_row_holds_its_chosen_options_and_values_but_no_bookkeeping() -> None:
    plain = {"name": "run", "model": {"_target_": "x.RCNN", "K": 8, "S": [1, 2]},
             "trainer": {"seed": 0, "workers": 4, "resume": None}, "paper": {"row": "a"}}
    choices = {"model": "rcnn", "schema/model@model": "rcnn", "experiment": None,
               "hydra/launcher": "basic", "dataset": "digits"}
    assert hparams_of(plain, choices) == {"model": "rcnn", "dataset": "digits", "name": "run",
                                          "model.K": 8, "model.S": "[1, 2]",
                                          "trainer.seed": 0}
