"""Config composition: every group option composes against its schema; bad values fail early."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_clean_error, compose_config, run_cli
from hydra.errors import ConfigCompositionException
from hydra.utils import get_class
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ValidationError

from rcnnexp.cli import CONF_DIR
from rcnnexp.config import SCHEMAS, validate
from rcnnexp.config.root import Config
from rcnnexp.errors import ConfigError

GROUPS = ("model", "dataset", "optim", "schedule")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize(("group", "option"),
                         [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes_against_its_schema(group: str, option: str) -> None:
    cfg = compose_config([f"{group}={option}", "trainer.epochs=200"])
    schema = OmegaConf.get_type(cfg[group])
    assert schema in SCHEMAS[group].values(), f"{group}={option} has no registered schema"
    typed = validate(cfg)
    assert isinstance(typed, Config)


@pytest.mark.parametrize(("option", "schema"), SCHEMAS["model"].items())
def test_a_model_class_takes_its_schemas_fields_as_keywords_without_defaults(
        option: str, schema: type) -> None:
    """The schema is the one place a model key's default is given: the class takes exactly
    the schema's fields and the dataset's shape, each by name, none with a default."""
    params = dict(inspect.signature(get_class(schema._target_).__init__).parameters)
    params.pop("self")
    assert [n for n, p in params.items()
            if p.kind is not p.KEYWORD_ONLY or p.default is not p.empty] == [], option
    fields = {f.name for f in dataclasses.fields(schema)} - {"_target_"}
    assert set(params) == fields | {"in_channels", "num_classes", "image_size"}, option


def test_composing_and_validating_a_config_does_not_load_torch() -> None:
    """The schemas take their choices from torch-free modules, so a bad override is refused
    before torch loads (seconds on a small CPU)."""
    code = ("import sys; from rcnnexp.cli import compose; from rcnnexp.config import "
            "register_configs, validate; register_configs(); "
            "[validate(compose([f'model={m}'])) for m in ('rcnn', 'recnet', 'crnn')]; "
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.stdout.strip() == "False", proc.stdout + proc.stderr


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_without_plus(experiment: str) -> None:
    cfg = compose_config([f"experiment={experiment}"])
    validate(cfg)
    assert cfg.name != "run", "an experiment names its runs"


def test_model_dataset_pairs_exist_for_real_options() -> None:
    for path in (CONF_DIR / "model_dataset").glob("*.yaml"):
        model, _, dataset = path.stem.partition("_")
        assert model in options("model") and dataset in options("dataset"), path.name


def test_defaults_are_the_embedded_digits_run() -> None:
    cfg = compose_config()
    assert OmegaConf.get_type(cfg.dataset).__name__ == "DigitsConfig"
    assert cfg.model.K == 32  # sized for digits by conf/model_dataset/rcnn_digits.yaml
    assert compose_config(["model.K=64"]).model.K == 64  # the command line wins


def test_unknown_key_fails_while_composing() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose_config(["model.KK=3"])
    assert isinstance(err.value.__cause__, ConfigAttributeError)
    assert "Key 'KK' not in 'RCNNConfig'" in str(err.value.__cause__)


def test_wrong_type_fails_while_composing() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose_config(["trainer.epochs=many"])
    assert isinstance(err.value.__cause__, ValidationError)


@pytest.mark.parametrize(("override", "message"), [
    ("trainer.epochs=0", "trainer.epochs must be positive"),
    ("trainer.batch_size=0", "trainer.batch_size must be positive"),
    ("model.K=0", "model.K must be positive"),
    ("model.dropout=1.5", "model.dropout must be in [0, 1)"),
    ("optim.lr=-1", "optim.lr must be positive"),
])
def test_invalid_values_are_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(")", r"\)")):
        validate(compose_config([override]))


def test_restarts_must_increase_and_end_before_the_last_epoch() -> None:
    with pytest.raises(ConfigError, match="strictly increasing"):
        validate(compose_config(["schedule=cosine_restarts", "schedule.restarts=[20,10]",
                                 "trainer.epochs=200"]))
    with pytest.raises(ConfigError, match="must lie before the last epoch"):
        validate(compose_config(["schedule=cosine_restarts", "trainer.epochs=100"]))


def test_nesterov_needs_momentum_and_no_dampening() -> None:
    with pytest.raises(ConfigError, match="nesterov"):
        validate(compose_config(["optim.nesterov=true", "optim.dampening=0.1"]))


def test_every_yaml_file_belongs_to_a_group() -> None:
    groups = {"model", "dataset", "optim", "schedule", "trainer", "experiment",
              "model_dataset", "recipe", "table", "hydra", "cluster", "search"}
    for path in Path(CONF_DIR).rglob("*.yaml"):
        rel = path.relative_to(CONF_DIR)
        assert rel.name == "config.yaml" or rel.parts[0] in groups, rel


@pytest.mark.parametrize("written", ["+trainer.epoch=3", "++trainer.epoch=3"])
def test_a_key_added_with_plus_is_refused_with_the_nearest_key(written: str) -> None:
    with pytest.raises(ConfigError, match=r"trainer.epoch is not a key of trainer \(did you "
                                          r"mean trainer.epochs\?\)"):
        validate(compose_config([written]))


def test_a_key_added_inside_a_list_of_schemas_is_refused() -> None:
    cfg = compose_config(["experiment=rcnn/t4_rcnn96"])
    assert cfg.paper is not None
    with pytest.raises(ConfigError, match=r"paper.values\[0\].metrik is not a key"):
        validate(compose_config(["experiment=rcnn/t4_rcnn96", "+paper.values.0.metrik=1"]))


@pytest.mark.parametrize("dataset", ["digits", "mnist", "cifar10", "svhn", "imagenet"])
def test_every_dataset_refuses_a_normalisation_it_does_not_have(dataset: str) -> None:
    with pytest.raises(ConfigCompositionException, match=r"dataset.normalize=zca") as err:
        compose_config([f"dataset={dataset}", "dataset.normalize=zca"])
    assert "Invalid value 'zca'" in str(err.value.__cause__)


def test_a_typo_in_a_choice_gets_the_nearest_choice() -> None:
    proc = run_cli("info", "dataset.views=gird9")  # refused while composing: one Choice each
    assert_clean_error(proc, "dataset.views=gird9", "did you mean grid9?")


@pytest.mark.parametrize("key", ["trainer.seed", "dataset.split_seed"])
def test_a_seed_torch_cannot_take_is_refused(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key} must be an integer from 0 to {2**63 - 1}, "
                                          "got -1"):
        validate(compose_config([f"{key}=-1"]))
    with pytest.raises(ConfigError, match=rf"{key} must be an integer"):
        validate(compose_config([f"{key}=99999999999999999999"]))
