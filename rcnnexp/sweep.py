"""What a sweep (``rcnnexp train -m``) adds to its jobs: every failure reported, a summary.

Hydra's basic sweeper re-raises a job's exception once the batch has run, which would end
the sweep with one traceback and no word about the other jobs. So a sweep job never raises:
:func:`failed_job` turns its error (a user error or a crash) into a record that the job
returns, and :class:`SweepReport` lists those records after the last job, writes the
sweep's HPARAMS table (:mod:`rcnnexp.engine.hparams`) and exits non-zero if any job failed.

A job's end is seen where the job runs: in the sweep's own process with Hydra's basic
launcher, in a process of its own (on another machine, for SLURM) with the submitit
launcher. So each job leaves its record in the sweep's folder (:data:`RECORDS`), and the
summary, in the sweep's process, is made from those files: a table of the jobs, best first.

A job's folder is its number, then the values that tell it apart from the sweep's other jobs
(``3_model.K=32,trainer.seed=1``; just ``3`` where nothing does): :func:`job_folder`, the
resolver ``conf/config.yaml``'s ``hydra.sweep.subdir`` calls, over Hydra's
``override_dirname`` with every key that is the same in all jobs excluded
(:func:`folder_naming_override`, which the CLI adds to a sweep's command line).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from rcnnexp.engine.hparams import best_val_top1, short_names
from rcnnexp.errors import UserError, unwritable_reason

log = logging.getLogger("rcnnexp")
FAILED = "failed"  # the key of a failed job's return value: its one-line message
RECORDS = ".jobs"  # <sweep dir>/.jobs/<job number>.json: each job's record, for the summary
SKIPPED = "skipped"  # a record's mark of a job that had finished before the sweep ran again
# the resolver conf/config.yaml names a job's folder with (hydra.sweep.subdir)
JOB_FOLDER_RESOLVER = "rcnnexp.job_folder"
# a job folder's swept values are cut (at a value's end, then marked "...") beyond this many
# bytes: a search's seven long floats would otherwise near the 255 bytes a name may have
FOLDER_VALUES_MAX_BYTES = 120
OVERRIDE_DIRNAME_EXCLUDE = "hydra.job.config.override_dirname.exclude_keys"


# -- the jobs' folders ----------------------------------------------------------------------------
def job_folder(num: int | str, values: str) -> str:
    """A sweep job's folder name: its number first, so that folders list in job order and
    stay unique, then its swept values as Hydra's ``override_dirname`` writes them, made safe
    for a path (:func:`folder_safe`): ``0_model.K=32``; just ``0`` for a job without any."""
    safe = folder_safe(values)
    return f"{num}_{safe}" if safe else str(num)


def job_number(directory: Path) -> int | None:
    """The number Hydra gave a sweep's job, read back from the folder :func:`job_folder`
    named: ``3``, or ``3_model.K=32``; None for any other folder."""
    number, sep, values = directory.name.partition("_")
    return int(number) if number.isdigit() and bool(values) == bool(sep) else None


def folder_safe(values: str) -> str:
    """``key=value,key=value`` as one folder name that a shell takes unquoted: a ``/`` (an
    option in a sub-folder: ``experiment=rcnn/t4_rcnn32``) and any other character but
    letters, digits and ``._=,+-`` become ``-``, brackets and quotes go (``model.d=[5,5,5]``
    -> ``model.d=5-5-5``, its commas too, which separate the values), a long number is
    rounded (:func:`short_number`), and what exceeds :data:`FOLDER_VALUES_MAX_BYTES` is cut
    at a value's end and marked ``...``."""
    chars, depth = [], 0
    for char in values:
        if char in "[({":
            depth += 1
        elif char in "])}":
            depth = max(depth - 1, 0)
        elif char in "'\"":
            continue
        elif char == "," and depth:
            chars.append("-")
        else:
            chars.append(char if char.isalnum() or char in "._=,+-" else "-")
    items = [short_number(item) for item in "".join(chars).split(",")] if chars else []
    kept: list[str] = []
    for item in items:
        if len(",".join([*kept, item]).encode()) > FOLDER_VALUES_MAX_BYTES:
            if not kept:  # one value longer than the whole budget: its start
                kept.append(item.encode()[:FOLDER_VALUES_MAX_BYTES].decode(errors="ignore"))
            return ",".join(kept) + "..."
        kept.append(item)
    return ",".join(kept)


def short_number(item: str) -> str:
    """``key=value`` with a decimal value of more than 7 significant digits (a search's
    draw: ``optim.lr=0.003515207314851794``) to 4 (``optim.lr=0.003515``); integers stay
    whole, and the job's ``.hydra/overrides.yaml`` keeps every value as given."""
    key, sep, value = item.rpartition("=")
    digits = value.lstrip("-+").replace(".", "").lstrip("0").partition("e")[0]
    try:
        number = float(value)
    except ValueError:
        return item
    decimal = "." in value or "e" in value.lower()
    return f"{key}{sep}{number:.4g}" if decimal and len(digits) > 7 else item


# registered when this module is imported: in the sweep's process, and in a submitit job's
# own process, which imports it to unpickle the sweep's callbacks before it names its folder
OmegaConf.register_new_resolver(JOB_FOLDER_RESOLVER, job_folder, replace=True)


def override_key(override: str) -> str:
    """The key an override sets, without Hydra's ``+``/``~``/``++`` (``+model.x=1`` ->
    ``model.x``), as Hydra's ``override_dirname`` matches its excluded keys."""
    return override.partition("=")[0].lstrip("+~")


def override_values(overrides: Sequence[str]) -> dict[str, str]:
    """A job's overrides as key (:func:`override_key`) -> value text; a later override of a
    key wins."""
    return {override_key(o): o.partition("=")[2] for o in overrides}


def swept_keys(jobs: Sequence[Mapping[str, str]]) -> list[str]:
    """The keys whose values tell the jobs apart (:func:`override_values` of each job): set
    differently, or only in some jobs; sorted, as Hydra sorts ``override_dirname``."""
    keys = {key for job in jobs for key in job}
    return sorted(k for k in keys if len({job.get(k) for job in jobs}) > 1)


def folder_naming_override(jobs: Sequence[Sequence[str]]) -> str:
    """The Hydra override that names each job's folder by its swept values alone: every
    other key of the jobs' overrides (the command line's fixed values, a table's ``table=``)
    is excluded from ``override_dirname``."""
    values = [override_values(job) for job in jobs]
    swept = set(swept_keys(values))
    fixed = sorted({key for job in values for key in job if not key.startswith("hydra")}
                   - swept)
    return f"{OVERRIDE_DIRNAME_EXCLUDE}=[{','.join(repr(k) for k in fixed)}]"


def failed_job(err: Exception, run_dir: Path) -> dict[str, str]:
    """Report a sweep job's error now (one line on stderr), and return what the summary lists.

    A crash's traceback goes to the job's ``train.log``, which the line names: a bug keeps
    its traceback without burying the sweep's other jobs under it.
    """
    from rcnnexp.engine.progress import log_to_files

    if isinstance(err, UserError):
        message = str(err)
    else:
        log_to_files(log, "".join(traceback.format_exception(err)).rstrip(), logging.ERROR)
        message = (f"crashed: {type(err).__name__}: {err} (traceback in "
                   f"{run_dir / 'train.log'})")
    print(f"error: {message}", file=sys.stderr)
    log_to_files(log, f"error: {message}", logging.ERROR)
    return {FAILED: message}


def job_record(num: int, overrides: Sequence[str], failed: str | None, cfg: DictConfig,
               choices: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """What the sweep's summary and HPARAMS table know of a job: its number, overrides and
    failure (None: it finished), its hyper-parameters (``cfg``: the job's config, Hydra's node
    aside; ``choices``: Hydra's ``runtime.choices``), its values and folder, and its results
    (:func:`job_results`)."""
    from rcnnexp.config import to_plain
    from rcnnexp.engine.hparams import hparams_of

    return {"num": num, "overrides": " ".join(overrides), "failed": failed,
            "hparams": hparams_of(to_plain(cfg), dict(choices)),
            "values": override_values(overrides), "dir": str(run_dir), **job_results(run_dir)}


def write_record(sweep_dir: Path, record: Mapping[str, Any]) -> None:
    """Keep a job's record in the sweep's folder (:data:`RECORDS`), whole or not at all."""
    folder = sweep_dir / RECORDS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['num']}.json"
    partial = path.with_suffix(".json.partial")  # whole or absent, as the summary reads it
    partial.write_text(json.dumps(record))
    partial.replace(path)


class SweepReport(Callback):
    """Hydra callback: after a sweep's last job, list the jobs that failed and why, write the
    sweep's HPARAMS table, print how to open it, and exit 1 if any job failed.

    It only acts on sweeps; a single run has no job number and nothing to summarize. Its
    job hook runs wherever the launcher runs the job, and writes the job's record there
    (:data:`RECORDS`); the sweep's start and end run in the sweep's process.
    """

    def on_multirun_start(self, config: DictConfig, **_: Any) -> None:
        """A sweep run again in its folder (hydra.sweep.dir=...) starts its records afresh,
        so that the summary is this run's jobs' (the jobs a rerun skips as finished get
        theirs again from rcnnexp's sweeper: rcnnexp.sweep_resume). A sweeper that keeps no
        record of the sweep (Optuna's, for conf/search) gets Hydra's ``multirun.yaml`` here,
        which marks the folder as a sweep for ``rcnnexp report`` while it runs."""
        from omegaconf import OmegaConf

        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:  # before Hydra's sweeper makes it, which would end in a traceback
            sweep_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            print(f"error: hydra.sweep.dir={sweep_dir}: cannot write a sweep there "
                  f"({unwritable_reason(sweep_dir, err)}); choose a folder you can write to",
                  file=sys.stderr)
            sys.exit(2)  # (Hydra turns a callback's exception into a warning and goes on)
        shutil.rmtree(sweep_dir / RECORDS, ignore_errors=True)
        if not (sweep_dir / "multirun.yaml").exists():
            OmegaConf.save(config, sweep_dir / "multirun.yaml")

    def on_job_end(self, config: DictConfig, job_return: Any, **_: Any) -> None:
        from hydra.core.utils import JobStatus
        from hydra.types import RunMode

        # a job of several tasks (SLURM, one per GPU) ends in each: rank 0 speaks for it
        if config.hydra.mode != RunMode.MULTIRUN or int(os.environ.get("RANK", "0")) != 0:
            return
        # a sweep job returns its failure (failed_job) rather than raising it
        value = job_return.return_value if job_return.status == JobStatus.COMPLETED else None
        failed = value[FAILED] if isinstance(value, dict) and FAILED in value else None
        write_record(Path(str(config.hydra.sweep.dir)), job_record(
            int(config.hydra.job.num), job_return.overrides or [], failed, job_return.cfg,
            job_return.hydra_cfg.hydra.runtime.choices,
            Path(str(config.hydra.runtime.output_dir))))

    def on_multirun_end(self, config: DictConfig, **_: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        records = sorted((json.loads(p.read_text()) for p in (sweep_dir / RECORDS).glob("*.json")),
                         key=lambda r: r["num"])
        write_hparams_table(sweep_dir, records)
        failed = [r for r in records if r["failed"] is not None]
        # printed, not logged: the jobs' logging is gone, and Hydra's own would prefix it
        tensorboard = f"TensorBoard:   tensorboard --logdir {sweep_dir}"
        if not failed:
            earlier = sum(bool(r.get(SKIPPED)) for r in records)
            before = f", {earlier} of them before this run" if earlier else ""
            print(f"sweep done: {len(records)} jobs, all finished{before} ({sweep_dir})")
            print(jobs_table(records, sweep_dir))
            print(tensorboard)
            return
        lines = [f"  #{r['num']} ({r['overrides']}): {r['failed']}" for r in failed]
        print(jobs_table(records, sweep_dir))
        print(tensorboard)
        print(f"sweep done: {len(failed)} of {len(records)} jobs failed:\n"
              + "\n".join(lines), file=sys.stderr)
        sys.exit(1)


def job_results(run_dir: Path) -> dict[str, Any]:
    """What the summary lists of a job from its results.json (read where the job ran: a
    search's trial returns only the number it is scored on): test top-1, the best
    validation top-1 (a two-stage run's from its tuning stage) and the epochs trained."""
    try:
        results = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return {"test_top1": None, "best_val_top1": None, "epochs": None}
    return {"test_top1": results.get("test_top1"), "best_val_top1": best_val_top1(results),
            "epochs": results.get("epochs")}


def write_hparams_table(sweep_dir: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """The sweep's HPARAMS table (:func:`rcnnexp.engine.hparams.write_sweep_hparams`), in the
    TensorBoard folder of its first job that has one.

    Not in the sweep's folder itself, where TensorBoard would list it as a run of its own
    named "." with nothing in it; an earlier run of the sweep's table is replaced, wherever
    it went (TensorBoard keeps the first table it reads).
    """
    from rcnnexp.engine.hparams import SWEEP_HPARAMS_SUFFIX, write_sweep_hparams
    from rcnnexp.engine.logger import TB_FOLDER

    for earlier in sweep_dir.glob(f"*/{TB_FOLDER}/*{SWEEP_HPARAMS_SUFFIX}"):
        earlier.unlink()
    home = next((Path(r["dir"]) / TB_FOLDER for r in records
                 if "dir" in r and (Path(r["dir"]) / TB_FOLDER).is_dir()), None)
    if home is not None:
        write_sweep_hparams(home, [r["hparams"] for r in records])


def jobs_table(records: Sequence[Mapping[str, Any]], sweep_dir: Path) -> str:
    """The sweep's jobs, one line each: the values that tell them apart (``K=32``), test
    top-1, best validation top-1, epochs and folder; the best validation top-1 first, jobs
    without one after, failed jobs last (marked in the test top-1 column)."""
    swept = swept_keys([r.get("values", {}) for r in records])
    names = short_names(swept)
    home = Path(os.path.abspath(sweep_dir))  # as Hydra makes a job's directory absolute

    def order(r: Mapping[str, Any]) -> tuple[bool, bool, float, int]:
        val = r.get("best_val_top1")
        return r["failed"] is not None, val is None, -(val or 0.0), r["num"]

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    rows = [("job", "swept values", "test top-1", "best val top-1", "epochs", "folder")]
    for r in sorted(records, key=order):
        values = " ".join(f"{names[k]}={r['values'][k]}" for k in swept
                          if k in r.get("values", {})) or "-"
        folder = Path(r["dir"]) if "dir" in r else None
        if folder is not None and folder.is_relative_to(home):
            folder = folder.relative_to(home)
        failed = r["failed"] is not None
        rows.append((f"#{r['num']}", values,
                     "failed" if failed else percent(r.get("test_top1")),
                     "-" if failed else percent(r.get("best_val_top1")),
                     "-" if failed or r.get("epochs") is None else str(r["epochs"]),
                     "-" if folder is None else str(folder)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = (False, False, True, True, True, False)  # numbers right-aligned
    return "\n".join("  " + "  ".join(cell.rjust(w) if r else cell.ljust(w)
                                      for cell, w, r in zip(row, widths, right, strict=True)
                                      ).rstrip() for row in rows)
