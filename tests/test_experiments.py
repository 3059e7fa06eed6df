"""Every row of every results table of the three papers is an experiment preset.

``PAPER_ROWS`` is a second transcription of the tables (from ``../shared/REFERENCE.md`` and
the seed texts); the presets in ``conf/experiment/<paper>/`` must match it row for row, so a
missing row, a typo in a number or a preset that builds the wrong model fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CPU, TINY_CRNN, assert_clean_error, compose_config, run_cli, train_run
from omegaconf import DictConfig, OmegaConf
from tiny_data import TINY_OVERRIDES, write_cifar100, write_imagenet_folders, write_mit_indoor

from rcnnexp.cli import CONF_DIR
from rcnnexp.config import validate
from rcnnexp.engine.build import build_data, build_model, count_params

EXPERIMENTS = CONF_DIR / "experiment"
C10, C100 = "cifar10", "cifar100"

# (preset, paper, table, row, [(dataset, metric, value), ...])
PAPER_ROWS: list[tuple[str, str, str, str, list[tuple[str, str, float]]]] = [
    # RCNN (Liang & Hu 2015): test error %
    *[(f"rcnn/t1_rcnn_recursive96_t{t}", "RCNN", "1", f"rCNN-96 T={t}", [(C10, "test_error", e)])
      for t, e in ((1, 12.65), (2, 12.99), (3, 14.92))],
    ("rcnn/t1_wcnn128", "RCNN", "1", "WCNN-128", [(C10, "test_error", 9.98)]),
    *[(f"rcnn/t1_rcnn96_t{t}", "RCNN", "1", f"RCNN-96 T={t}", [(C10, "test_error", e)])
      for t, e in ((1, 9.95), (2, 9.63), (3, 9.31))],
    *[(f"rcnn/t2_rcnn{k}", "RCNN", "2", f"RCNN-{k}, no augmentation", [(C10, "test_error", e)])
      for k, e in ((96, 9.31), (128, 8.98), (160, 8.69))],
    ("rcnn/t2_rcnn96_no_dropout", "RCNN", "2", "RCNN-96 without dropout",
     [(C10, "test_error", 13.56)]),
    *[(f"rcnn/t2_aug_rcnn{k}", "RCNN", "2", f"RCNN-{k}, augmentation", [(C10, "test_error", e)])
      for k, e in ((96, 7.37), (128, 7.24), (160, 7.09))],
    *[(f"rcnn/t3_rcnn{k}", "RCNN", "3", f"RCNN-{k}", [(C100, "test_error", e)])
      for k, e in ((96, 34.18), (128, 32.59), (160, 31.75))],
    *[(f"rcnn/t4_rcnn{k}", "RCNN", "4", f"RCNN-{k}", [("mnist", "test_error", e)])
      for k, e in ((32, 0.42), (64, 0.32), (96, 0.31))],
    *[(f"rcnn/t5_rcnn{k}", "RCNN", "5", f"RCNN-{k}", [("svhn", "test_error", e)])
      for k, e in ((128, 1.87), (160, 1.80), (192, 1.77))],
    # C-RNN (Zuo et al. 2015): ILSVRC top-1 / top-5 error %, SUN397 and MIT Indoor accuracy %
    ("crnn/t1_alexnet_1view", "C-RNN", "1", "AlexNet, 1 view",
     [("imagenet", "test_error", 42.71), ("imagenet", "test_top5_error", 20.01)]),
    ("crnn/t1_crnn_1view", "C-RNN", "1", "C-RNN, 1 view",
     [("imagenet", "test_error", 41.85), ("imagenet", "test_top5_error", 19.15)]),
    ("crnn/t1_alexnet_10views", "C-RNN", "1", "AlexNet, 10 views",
     [("imagenet", "test_error", 41.35), ("imagenet", "test_top5_error", 18.74)]),
    ("crnn/t1_crnn_10views", "C-RNN", "1", "C-RNN, 10 views",
     [("imagenet", "test_error", 40.16), ("imagenet", "test_top5_error", 17.78)]),
    ("crnn/t2_alexnet", "C-RNN", "2", "AlexNet", [("sun397", "test_top1", 43.74)]),
    ("crnn/t2_alexnet_finetune", "C-RNN", "2", "AlexNet (finetune)",
     [("sun397", "test_top1", 47.12)]),
    ("crnn/t2_crnn", "C-RNN", "2", "C-RNN", [("sun397", "test_top1", 43.38)]),
    ("crnn/t2_crnn_finetune", "C-RNN", "2", "C-RNN (finetune)", [("sun397", "test_top1", 51.14)]),
    ("crnn/t3_alexnet", "C-RNN", "3", "AlexNet", [("mitindoor", "test_top1", 59.85)]),
    ("crnn/t3_alexnet_finetune", "C-RNN", "3", "AlexNet (finetune)",
     [("mitindoor", "test_top1", 63.21)]),
    ("crnn/t3_crnn", "C-RNN", "3", "C-RNN", [("mitindoor", "test_top1", 58.96)]),
    ("crnn/t3_crnn_finetune", "C-RNN", "3", "C-RNN (finetune)",
     [("mitindoor", "test_top1", 65.07)]),
    *[(f"crnn/t4_{name}", "C-RNN", "4", row, [("imagenet", "test_error", e)])
      for name, row, e in (("left_to_right", "C-RNN1 (->)", 40.89),
                           ("right_to_left", "C-RNN1 (<-)", 40.86),
                           ("top_to_bottom", "C-RNN1 (down)", 40.70),
                           ("bottom_to_top", "C-RNN1 (up)", 40.74),
                           ("horizontal", "C-RNN2 (-> <-)", 40.71),
                           ("vertical", "C-RNN2 (down up)", 40.53),
                           ("all", "C-RNN4", 40.16))],
    # RecNets (Retsinas et al. 2019): accuracy %, CIFAR-10 and CIFAR-100
    *[(f"recnet/t{table}_{name}", "RecNets", table, row,
       [(C10, "test_top1", a), (C100, "test_top1", b)])
      for table, rows in (
          ("2a", (("relu", "ReLU", 94.62, 75.48),
                  ("shared_bn", "shared BN + ReLU", 87.44, 62.70),
                  ("separate_bn", "separate BN + ReLU", 95.15, 78.25),
                  ("linear", "None (linear)", 94.24, 75.71))),
          ("2b", (("e1", "e = 1", 93.38, 71.94), ("e2", "e = 2", 94.16, 73.10),
                  ("e4", "e = 4", 95.15, 78.25), ("e8", "e = 8", 95.47, 79.33))),
          ("2c", (("wh1x1", "W_x 3x3, W_h 1x1", 94.71, 77.48),
                  ("wx1x1", "W_x 1x1, W_h 3x3", 94.72, 77.42),
                  ("both3x3", "W_x 3x3, W_h 3x3", 95.15, 78.25))),
          ("2d", (("recurrent", "recurrent", 95.15, 78.25),
                  ("grouped", "grouped", 94.65, 76.04))))
      for name, row, a, b in rows],
    *[(f"recnet/t3_{acronym}", "RecNets", "3", f"RecNet({arch})",
       [(C10, "test_top1", a), (C100, "test_top1", b)])
      for arch, acronym, a, b in (
          ("4,4,8,16,10,10,10", "60_640", 93.45, 74.94),
          ("4,4,8,16,15,15,15", "90_960", 94.32, 76.31),
          ("4,4,8,16,20,20,20", "120_1280", 94.58, 77.62),
          ("4,8,16,32,10,10,10", "60_1280", 95.15, 78.25),
          ("4,8,16,32,15,15,15", "90_1920", 95.22, 79.01),
          ("4,8,16,32,20,20,20", "120_2560", 95.46, 80.31),
          ("4,8,8,8,5,10,15", "60_480", 93.28, 73.68),
          ("4,8,8,8,10,15,20", "90_640", 93.95, 75.86),
          ("4,8,8,8,10,20,30", "120_960", 94.44, 77.58),
          ("4,16,16,16,5,10,15", "60_960", 94.54, 77.91),
          ("4,16,16,16,10,15,20", "90_1280", 94.77, 78.00),
          ("4,16,16,16,10,20,30", "120_1920", 95.47, 79.38))],
    ("recnet/t4_30_60", "RecNets", "4", "RecNet-30-60", [(C100, "test_top1", 70.85)]),
    ("recnet/t4_120_2880", "RecNets", "4", "RecNet-120-2880", [(C100, "test_top1", 80.56)]),
]
PRESETS = [row[0] for row in PAPER_ROWS]


def paper_presets() -> list[str]:
    return sorted(str(p.relative_to(EXPERIMENTS).with_suffix(""))
                  for p in EXPERIMENTS.glob("*/*.yaml"))


def compose_experiment(name: str, *overrides: str) -> DictConfig:
    """A preset composed as `rcnnexp train experiment=NAME` would; fine-tuning presets get a
    stand-in checkpoint path (nothing is loaded while composing)."""
    extra = ["finetune.checkpoint=ilsvrc.pt"] if "finetune:" in (
        EXPERIMENTS / f"{name}.yaml").read_text() else []
    return compose_config([f"experiment={name}", *extra, *overrides])


def test_every_table_row_has_exactly_one_preset() -> None:
    assert len(set(PRESETS)) == len(PRESETS) == 69
    assert paper_presets() == sorted(PRESETS)


@pytest.mark.parametrize(("preset", "paper", "table", "row", "values"), PAPER_ROWS,
                         ids=PRESETS)
def test_preset_holds_the_papers_row_and_validates(
        preset: str, paper: str, table: str, row: str,
        values: list[tuple[str, str, float]]) -> None:
    cfg = compose_experiment(preset)
    typed = validate(cfg)
    assert typed.paper is not None
    got = [(v.dataset, v.metric.value, v.value) for v in typed.paper.values]
    assert (typed.paper.paper, typed.paper.table, typed.paper.row, got) == (
        paper, table, row, values)
    assert typed.name == preset.replace("/", "-").replace("_", "-")
    # the preset trains on a dataset the row reports a number for
    dataset = OmegaConf.get_type(cfg.dataset).__name__.removesuffix("Config").lower()
    assert dataset in {d for d, _, _ in values}


# exact parameter counts of REFERENCE §1 (3-channel 10-class CIFAR-10, grey MNIST, ...)
RCNN_PARAMS = {
    "rcnn/t1_rcnn96_t3": 672_202, "rcnn/t1_rcnn_recursive96_t1": 672_202,
    "rcnn/t1_wcnn128": 601_354, "rcnn/t2_rcnn128": 1_191_178, "rcnn/t2_aug_rcnn160": 1_857_610,
    "rcnn/t4_rcnn32": 75_018, "rcnn/t4_rcnn64": 297_482, "rcnn/t4_rcnn96": 667_402,
    "rcnn/t5_rcnn192": 2_671_498,  # the paper: 2.67 M
}


@pytest.mark.parametrize(("preset", "params"), RCNN_PARAMS.items())
def test_rcnn_presets_build_the_papers_models(preset: str, params: int) -> None:
    cfg = compose_experiment(preset)
    assert count_params(build_model(cfg.model, build_data(cfg.dataset).spec)) == params


@pytest.mark.parametrize("preset", [p for p in PRESETS if p.startswith("recnet/t3_")])
def test_recnet_table3_presets_build_the_named_architecture(preset: str) -> None:
    row = next(r for r in PAPER_ROWS if r[0] == preset)[3]
    e, s1, s2, s3, d1, d2, d3 = map(int, row.removeprefix("RecNet(").rstrip(")").split(","))
    model = compose_experiment(preset).model
    assert (model.e, list(model.S), list(model.d)) == (e, [s1, s2, s3], [d1, d2, d3])


def test_recnet_rows_train_on_cifar10_when_asked() -> None:
    cfg = compose_experiment("recnet/t2b_e8", "dataset=cifar10")
    assert OmegaConf.get_type(cfg.dataset).__name__ == "CIFAR10Config"
    assert cfg.model.e == 8 and cfg.optim.lr == 0.1 and cfg.dataset.padding == 4


def test_crnn_table4_presets_choose_their_directions() -> None:
    directions = {p: list(compose_experiment(p).model.directions)
                  for p in PRESETS if p.startswith("crnn/t4_")}
    assert directions["crnn/t4_bottom_to_top"] == ["bottom_to_top"]
    assert directions["crnn/t4_vertical"] == ["top_to_bottom", "bottom_to_top"]
    assert len(directions["crnn/t4_all"]) == 4


def test_a_fine_tuning_preset_without_a_checkpoint_is_a_clean_error(tmp_path: Path) -> None:
    proc = run_cli("train", "experiment=crnn/t2_crnn_finetune", f"hydra.run.dir={tmp_path}")
    assert_clean_error(proc, "finetune.trainable needs finetune.checkpoint=PATH")


def test_an_unknown_preset_is_a_clean_error_naming_the_presets(tmp_path: Path) -> None:
    for command in (["train", "-m", "experiment=recnet/t2b_e8,recnet/t9"],
                    ["train", "experiment=t2b_e8", f"hydra.run.dir={tmp_path / 'run'}"],
                    ["info", "experiment=recnet/t9"]):
        proc = run_cli(*command)
        assert_clean_error(proc, "is not a preset", "recnet/: t2a_linear", "rcnn/: t1_rcnn96_t1")
        assert "Config search path" not in proc.stderr
    assert not (tmp_path / "run").exists()  # refused before Hydra made a run directory


# -- end to end on the tiny files: a row's run writes the paper's number beside ours ----------
CRNN_RUN = (*TINY_CRNN, "trainer.epochs=1", "trainer.batch_size=8", "schedule.milestones=[]",
            "trainer.progress=false", "dataset.download=false", CPU)


def test_recnet_row_runs_and_reports_beside_the_paper(tmp_path: Path) -> None:
    write_cifar100(tmp_path / "data")
    results = train_run(tmp_path / "run", "experiment=recnet/t2b_e1",
                        f"dataset.root={tmp_path}/data", "dataset.download=false",
                        "model.S=[2,2,2]", "model.d=[2,2,2]", "trainer.epochs=1",
                        "schedule.restarts=[]", "trainer.batch_size=16",
                        "trainer.progress=false", CPU, *TINY_OVERRIDES["cifar100"])
    assert results["experiment"] == "recnet/t2b_e1" and results["name"] == "recnet-t2b-e1"
    [compared] = results["paper"]["metrics"]
    assert (results["paper"]["table"], results["paper"]["dataset"], compared["metric"],
            compared["value"]) == ("2b", "cifar100", "test_top1", 71.94)
    assert compared["ours"] == results["test_top1"]
    assert compared["difference"] == pytest.approx(results["test_top1"] - 71.94)


def test_crnn_rows_chain_ilsvrc_training_into_fine_tuning(tmp_path: Path) -> None:
    """Table 1's model, then Table 3's fine-tuning from its checkpoint (MIT Indoor protocol:
    only the RNN and the classifier learn), each compared with its own row."""
    data = tmp_path / "data"
    write_imagenet_folders(data)
    write_mit_indoor(data)
    ilsvrc = train_run(tmp_path / "ilsvrc", "experiment=crnn/t1_crnn_10views",
                       f"dataset.root={data}", *CRNN_RUN, *TINY_OVERRIDES["imagenet"])
    assert [m["metric"] for m in ilsvrc["paper"]["metrics"]] == ["test_error", "test_top5_error"]
    checkpoint = tmp_path / "ilsvrc" / "checkpoints" / "last.pt"
    tuned = train_run(tmp_path / "mit", "experiment=crnn/t3_crnn_finetune",
                      f"dataset.root={data}", f"finetune.checkpoint={checkpoint}", *CRNN_RUN,
                      *TINY_OVERRIDES["mitindoor"])
    [compared] = tuned["paper"]["metrics"]
    assert (compared["metric"], compared["value"]) == ("test_top1", 65.07)
    assert tuned["trainable_params"] < tuned["params"]


# each recipe with a dataset it is written for
RECIPES = {"rcnn": "cifar10", "rcnn_mnist": "mnist", "crnn_imagenet": "imagenet",
           "crnn_finetune": "sun397", "recnet": "cifar100"}
SCHEDULES = sorted(p.stem for p in (CONF_DIR / "schedule").glob("*.yaml"))


def test_every_recipe_is_covered() -> None:
    assert sorted(RECIPES) == sorted(p.stem for p in (CONF_DIR / "recipe").glob("*.yaml"))


@pytest.mark.parametrize(("recipe", "dataset"), RECIPES.items())
def test_a_recipes_schedule_can_be_swapped_for_any_other(recipe: str, dataset: str) -> None:
    """Recipes choose a schedule option and set none of its keys, so `schedule=step` on the
    command line (RCNN's retraining on all images, docs/experiments.md) composes."""
    for schedule in SCHEDULES:
        compose_config([f"recipe={recipe}", f"dataset={dataset}", f"schedule={schedule}"])


def test_rcnn_retraining_on_all_images_composes() -> None:
    cfg = compose_experiment("rcnn/t2_rcnn96", "dataset.val_split=none", "schedule=step",
                             "schedule.milestones=[40,60,80]", "trainer.epochs=90")
    typed = validate(cfg)
    assert typed.dataset.val_split == "none" and list(typed.schedule.milestones) == [40, 60, 80]


def test_docs_list_every_preset() -> None:
    docs = (CONF_DIR.parent / "docs" / "experiments.md").read_text()
    assert [p for p in PRESETS if f"`{p}`" not in docs] == []
