"""TensorBoard's HPARAMS table: each run's hyper-parameters and chosen options, its final
metrics, and for a sweep one table over all its jobs.

TensorBoard builds the table from three kinds of records (its hparams plugin's protos):

- a *session start* per run: the run's values. Each run writes one (:func:`session_start`).
- an *experiment*: which columns there are and which of them differ between the runs.
  TensorBoard takes the first it finds under its logdir, so a run writes none (with none,
  TensorBoard makes the columns from every run's values), and a sweep writes one at its end
  for all its jobs (:func:`write_sweep_hparams`), into its first job's own TensorBoard folder:
  a folder of its own would be listed as a run with nothing in it.
- metrics: the last value of a scalar series. results.json's final metrics are written into
  the run's ``final`` sub-run, each on the curve it is a point of (``test_top1`` on
  ``test/top1``), so the Scalars tab shows them as points on the real curves rather than as
  charts of one point each.

How the tab shows them (TensorBoard 2.21, checked in its code): the columns that differ first,
each group by name, the first five shown and the others listed to tick; every number printed
with five significant digits (32 as ``32.000``), so integers are written as text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# results.json's final metrics, and the curve each one is a point of
FINAL_METRICS = {
    "test_top1": "test/top1",
    "test_top5": "test/top5",
    "best_val_top1": "val/top1",
    "train_top1": "train/top1",
    "images_per_s": "time/images_per_s",
}
FINAL_RUN = "final"  # the sub-run of a run's tb/ that holds them
# the end of the name of the event file that holds a sweep's experiment (its HPARAMS columns)
SWEEP_HPARAMS_SUFFIX = ".sweep-hparams"
# config keys that describe how a run is executed or stored, not what it trains
BOOKKEEPING = ("trainer.resume", "trainer.progress", "trainer.workers", "trainer.log_every",
               "trainer.checkpoint_every_steps", "trainer.checkpoint_every_minutes",
               "dataset.root", "dataset.download")

HParam = bool | int | float | str


def best_val_top1(results: Mapping[str, Any]) -> float | None:
    """A results.json's best validation top-1: a two-stage run's stage 2 trains on train+val
    and validates on nothing, so its number is the tuning stage's (``tune``)."""
    value = results.get("best_val_top1")
    return value if value is not None else (results.get("tune") or {}).get("best_val_top1")


def hparams_of(plain: Mapping[str, Any], choices: Mapping[str, str | None]) -> dict[str, HParam]:
    """A run's HPARAMS row: the chosen option of every config group (``model: rcnn``), then
    every config value but bookkeeping and ``_target_``s (``model.K: 96``).

    ``choices`` is Hydra's group -> option; its internal entries (``schema/...``,
    ``hydra/...``) and groups left unset are not the user's choices and are left out.
    """
    chosen = {group: option for group, option in choices.items()
              if option is not None and "/" not in group and "@" not in group}
    flat = flatten({k: v for k, v in plain.items() if k != "paper"})
    values = {k: v for k, v in flat.items()
              if not k.startswith(BOOKKEEPING) and not k.endswith("_target_")}
    return {k: hparam_value(v) for k, v in {**chosen, **values}.items()}


def hparam_value(value: Any) -> HParam:
    """What TensorBoard can hold: a number, a bool or a string (``null``, ``[8, 16]``)."""
    if isinstance(value, bool | int | float | str):
        return value
    return "null" if value is None else str(value)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'model': {'K': 96}} -> {'model.K': 96}; lists stay whole values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def shown_value(value: HParam) -> bool | float | str:
    """A value as TensorBoard is given it: an integer as text, since the tab prints every
    number with five significant digits (``model.K`` 32 as ``32.000``); a float as a number,
    which the tab's plots can place on an axis."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Each key by its shortest dotted ending that no other key shares: ``model.K`` -> ``K``,
    ``trainer.seed`` -> ``seed``; ``optim.lr`` stays whole beside ``schedule.lr``."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            name = ".".join(parts[-n:])
            if not any(other != key and (other == name or other.endswith("." + name))
                       for other in keys):
                break
        names[key] = name
    return names


def session_start(hparams: Mapping[str, HParam]) -> Any:
    """The Summary that records a run's values (TensorBoard: one row of HPARAMS)."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo()
    for key, value in hparams.items():
        shown = shown_value(value)
        if isinstance(shown, bool):
            start.hparams[key].bool_value = shown
        elif isinstance(shown, float):
            start.hparams[key].number_value = shown
        else:
            start.hparams[key].string_value = shown
    return _summary("session_start_info", plugin_data_pb2.HParamsPluginData(
        session_start_info=start))


def session_end() -> Any:
    """The Summary that marks a run as finished (HPARAMS' status column: success)."""
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    return _summary("session_end_info", plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS)))


def experiment(jobs: Sequence[Mapping[str, HParam]]) -> Any:
    """The Summary that declares a sweep's columns: every key any job has, and its final
    metrics.

    A key whose value differs between the jobs that have it is marked ``differs``, whether
    the command line set it or a preset did (``-m model=rcnn,recnet_30_60``: ``model``, and
    the learning rate and batch size each model's preset sets): TensorBoard lists those
    first and shows them by default. A key only some jobs have, each the same value
    (``model.K`` of the RCNN job alone), is told apart by the choice that brought it
    (``model``), and is hidden by default like every key that never changes.
    """
    from google.protobuf import struct_pb2
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    keys = list(dict.fromkeys(k for job in jobs for k in job))
    infos = []
    for key in keys:
        values = [shown_value(job[key]) for job in jobs if key in job]
        info = api_pb2.HParamInfo(name=key, differs=len(set(map(repr, values))) > 1)
        if all(isinstance(v, bool) for v in values):
            info.type = api_pb2.DATA_TYPE_BOOL
            info.domain_discrete.CopyFrom(struct_pb2.ListValue(
                values=[struct_pb2.Value(bool_value=v) for v in sorted(set(values))]))
        elif all(isinstance(v, float) for v in values):
            info.type = api_pb2.DATA_TYPE_FLOAT64
            info.domain_interval.min_value = min(values)  # type: ignore[type-var]
            info.domain_interval.max_value = max(values)  # type: ignore[type-var]
        else:
            # mixed types (null in one job, 0.5 in another) get no domain: a domain of one
            # type would filter out the rows whose value has the other
            info.type = api_pb2.DATA_TYPE_STRING
            if all(isinstance(v, str) for v in values):
                info.domain_discrete.CopyFrom(struct_pb2.ListValue(
                    values=[struct_pb2.Value(string_value=v)
                            for v in sorted(set(values), key=_text_order)]))
        infos.append(info)
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(group=FINAL_RUN, tag=tag),
                                  display_name=name,
                                  description=f"results.json's {name} (a point on {tag})")
               for name, tag in FINAL_METRICS.items()]
    return _summary("experiment", plugin_data_pb2.HParamsPluginData(
        experiment=api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics)))


def _text_order(value: Any) -> tuple[bool, int, str]:
    """Integers written as text by their number (8 before 16), before any other text."""
    text = str(value)
    number = text.lstrip("-")
    return (not number.isdigit(), int(text) if number.isdigit() else 0, text)


def write_sweep_hparams(tb_dir: Path, jobs: Sequence[Mapping[str, HParam]]) -> None:
    """Write the sweep's experiment (:func:`experiment`) into ``tb_dir``, a run's TensorBoard
    folder, in an event file of its own (named ``...`` :data:`SWEEP_HPARAMS_SUFFIX`) that
    replaces an earlier one there: TensorBoard keeps the first experiment it reads."""
    from torch.utils.tensorboard.writer import FileWriter

    for earlier in tb_dir.glob(f"*{SWEEP_HPARAMS_SUFFIX}"):
        earlier.unlink()
    writer = FileWriter(str(tb_dir), filename_suffix=SWEEP_HPARAMS_SUFFIX)
    writer.add_summary(experiment(jobs))
    writer.close()


def _summary(kind: str, data: Any) -> Any:
    """A Summary of the hparams plugin: its data travels in the value's metadata."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import metadata

    data.version = metadata.PLUGIN_DATA_VERSION
    plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME,
                                        content=data.SerializeToString())
    tag = {"experiment": metadata.EXPERIMENT_TAG, "session_start_info":
           metadata.SESSION_START_INFO_TAG, "session_end_info": metadata.SESSION_END_INFO_TAG}[kind]
    return Summary(value=[Summary.Value(tag=tag,
                                        metadata=SummaryMetadata(plugin_data=plugin))])
