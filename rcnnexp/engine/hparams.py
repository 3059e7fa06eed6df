"""TensorBoard's HPARAMS table: each run's hyper-parameters and chosen options, its final
metrics, and for a sweep one table over all its jobs.

TensorBoard builds the table from three kinds of records (its hparams plugin's protos):

- a *session start* per run: the run's values. Each run writes one (:func:`session_start`).
- an *experiment*: which columns there are and which come first. TensorBoard takes the first
  it finds under its logdir, so a run writes none (with none, TensorBoard makes the columns
  from every run's values), and a sweep writes one at its end for all its jobs
  (:func:`write_sweep_hparams`): the union of their keys, with what tells the jobs apart first.
- metrics: the last value of a scalar series. results.json's final metrics are written into
  the run's ``final`` sub-run, each on the curve it is a point of (``test_top1`` on
  ``test/top1``), so the Scalars tab shows them as points on the real curves rather than as
  charts of one point each.
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
# the chosen options that say what a run is (results.json's identity): first in a sweep's
# table even where every job chose the same
FIRST_CHOICES = ("model", "dataset", "experiment")
# config keys that describe how a run is executed or stored, not what it trains
BOOKKEEPING = ("trainer.resume", "trainer.progress", "trainer.workers", "trainer.log_every",
               "trainer.checkpoint_every_steps", "trainer.checkpoint_every_minutes",
               "dataset.root", "dataset.download")

HParam = bool | int | float | str


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


def session_start(hparams: Mapping[str, HParam]) -> Any:
    """The Summary that records a run's values (TensorBoard: one row of HPARAMS)."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo()
    for key, value in hparams.items():
        if isinstance(value, bool):
            start.hparams[key].bool_value = value
        elif isinstance(value, int | float):
            start.hparams[key].number_value = value
        else:
            start.hparams[key].string_value = value
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

    A key whose value differs between jobs, or that some jobs lack (``model.K`` in
    ``-m model=rcnn,recnet_30_60``), and the :data:`FIRST_CHOICES` are marked ``differs``:
    TensorBoard lists those first and shows the first five of them by default.
    """
    from google.protobuf import struct_pb2
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    keys = list(dict.fromkeys(k for job in jobs for k in job))
    infos = []
    for key in keys:
        values = [job[key] for job in jobs if key in job]
        distinct = set(map(repr, values))
        info = api_pb2.HParamInfo(name=key, differs=key in FIRST_CHOICES
                                  or len(values) < len(jobs) or len(distinct) > 1)
        if all(isinstance(v, bool) for v in values):
            info.type = api_pb2.DATA_TYPE_BOOL
            info.domain_discrete.CopyFrom(struct_pb2.ListValue(
                values=[struct_pb2.Value(bool_value=v) for v in sorted(set(values))]))
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            info.type = api_pb2.DATA_TYPE_FLOAT64
            info.domain_interval.min_value = float(min(values))  # type: ignore[type-var]
            info.domain_interval.max_value = float(max(values))  # type: ignore[type-var]
        else:
            # mixed types (null in one job, 161 in another) get no domain: a domain of one
            # type would filter out the rows whose value has the other
            info.type = api_pb2.DATA_TYPE_STRING
            if all(isinstance(v, str) for v in values):
                info.domain_discrete.CopyFrom(struct_pb2.ListValue(
                    values=[struct_pb2.Value(string_value=v) for v in sorted(set(values))]))
        infos.append(info)
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(group=FINAL_RUN, tag=tag),
                                  display_name=name,
                                  description=f"results.json's {name} (a point on {tag})")
               for name, tag in FINAL_METRICS.items()]
    return _summary("experiment", plugin_data_pb2.HParamsPluginData(
        experiment=api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics)))


def write_sweep_hparams(sweep_dir: Path, jobs: Sequence[Mapping[str, HParam]]) -> None:
    """Write the sweep's experiment (:func:`experiment`) into ``sweep_dir`` itself, the
    directory ``tensorboard --logdir`` is pointed at, in place of the one an earlier run of
    the sweep wrote there (a sweep continued in its folder: one table of all its jobs)."""
    from torch.utils.tensorboard.writer import FileWriter

    earlier = list(sweep_dir.glob("events.out.tfevents.*"))
    writer = FileWriter(str(sweep_dir))
    writer.add_summary(experiment(jobs))
    writer.close()
    for path in earlier:
        path.unlink(missing_ok=True)


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
