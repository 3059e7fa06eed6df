"""Whether a run is its table row as the paper ran it, and if not, why: the report's †.

A run departs from its row's protocol when

* its command line changed what it computes (:meth:`Run.changes`: ``trainer.epochs=20``);
* it trained in another arithmetic than the papers' fp32: bf16 or fp16 mixed precision, or
  TF32 products in its fp32 matmuls and convolutions (``trainer.tf32``, on CUDA);
* its config differs from what its preset, with the same command line, composes to today:
  a run made before a preset changed (a new learning rate, another schedule) ran a protocol
  the table no longer describes. The keys that change nothing a run computes (the resume
  check's :data:`~rcnnexp.engine.resume.RUN_DESCRIPTION`: device, workers, progress,
  compile, ...) are left out, keys the schemas gained since the run count as their defaults
  (what the run ran with), and ``auto`` settings compare as they resolve on the run's device;
* or that cannot be checked: its stored config (``.hydra/config.yaml``,
  :attr:`Run.stored_config`) is missing or unreadable, or its preset no longer composes with
  its command line (a preset renamed or removed); the report says so rather than failing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from omegaconf import OmegaConf

from rcnnexp.report.runs import Run

PAPERS_PRECISION = "fp32"  # what the three papers trained in (Caffe / cuda-convnet, 2015-2019)
SHOWN_DIFFERENCES = 5  # a drifted preset's differences listed, before "and N more"


def departures(runs: Iterable[Run], conf_dir: Path) -> dict[Path, list[str]]:
    """Every run's reasons for a † (none: run as its preset stands), by run directory.

    The presets compose under one Hydra context for all the runs."""
    from hydra import initialize_config_dir

    from rcnnexp.config import register_configs

    register_configs()
    out: dict[Path, list[str]] = {}
    with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base=None):
        for run in runs:
            if run.directory not in out:
                reasons = []
                if changes := run.changes():
                    reasons.append(f"changed on the command line: `{' '.join(changes)}`")
                out[run.directory] = [*reasons, *arithmetic(run), *preset_drift(run)]
    return out


def arithmetic(run: Run) -> list[str]:
    """The run's arithmetic where it is not the papers' fp32: results.json's resolved
    ``precision``, and TF32 (results.json's ``tf32``; for a run written before it was
    recorded, its stored ``trainer.tf32``, true by default, on a CUDA device)."""
    r = run.results
    device = str(r.get("device") or "")
    precision = r.get("precision")
    if precision is not None and precision != PAPERS_PRECISION:
        return [f"trained in precision={precision} (mixed precision) on {device or 'its device'}"
                f"; the papers trained in {PAPERS_PRECISION}"]
    tf32 = r.get("tf32")
    if tf32 is None and device.startswith("cuda"):
        stored = run.stored_config
        trainer = stored.get("trainer", {}) if isinstance(stored, dict) else {}
        tf32 = bool(trainer.get("tf32", True))
    if tf32:
        return [f"TF32 products in its fp32 matmuls and convolutions on {device} "
                f"(trainer.tf32=true); the papers trained in full {PAPERS_PRECISION}"]
    return []


def preset_drift(run: Run) -> list[str]:
    """How the run's config differs from its preset's today, composed with the run's own
    command line (its ``hydra.*`` keys aside, which set no config value); [] where they
    agree. Called inside a Hydra context for the config directory (:func:`departures`)."""
    from hydra import compose

    from rcnnexp.config import explain, with_new_keys
    from rcnnexp.config.trainer import resolved_settings
    from rcnnexp.engine.checkpoint import config_differences

    what = f"experiment={run.results['experiment']}" if run.results.get(
        "experiment") else "the default config"
    stored = run.stored_config
    if isinstance(stored, str):
        return [f"{stored}: not compared with {what} as it composes today"]
    overrides = [str(o) for o in run.results.get("overrides", [])
                 if not str(o).lstrip("+~").startswith("hydra.")]
    try:
        today = OmegaConf.to_container(compose(config_name="config", overrides=overrides),
                                       resolve=False, enum_to_str=True)
    except Exception as err:  # whatever stops the composition is the reason, not a crash
        try:
            why = explain(err)
        except Exception:
            why = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return [f"{what} no longer composes with its command line "
                f"({why or type(err).__name__})"]
    assert isinstance(today, dict)
    device_type = str(run.results.get("device") or "cpu").split(":")[0]
    ran, now = (resolved_settings(with_new_keys(c), device_type) for c in (stored, today))
    diffs = [d for d in config_differences(ran, now)
             if not _describes_the_run(d.split(":", 1)[0])]
    if not diffs:
        return []
    more = len(diffs) - SHOWN_DIFFERENCES
    return [f"{what} composes otherwise today (the run's value -> today's): "
            + "; ".join(f"`{d}`" for d in diffs[:SHOWN_DIFFERENCES])
            + (f"; and {more} more" if more > 0 else "")]


def _describes_the_run(key: str) -> bool:
    from rcnnexp.engine.resume import RUN_DESCRIPTION

    return any(key == k or key.startswith(f"{k}.") for k in RUN_DESCRIPTION)


__all__ = ["PAPERS_PRECISION", "arithmetic", "departures", "preset_drift"]
