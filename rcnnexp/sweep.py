"""What a sweep (``rcnnexp train -m``) adds to its jobs: every failure reported, a summary.

Hydra's basic sweeper re-raises a job's exception once the batch has run, which would end
the sweep with one traceback and no word about the other jobs. So a sweep job never raises:
:func:`failed_job` turns its error (a user error or a crash) into a record that the job
returns, and :class:`SweepReport` lists those records after the last job, writes the
sweep's HPARAMS table (:mod:`rcnnexp.engine.hparams`) and exits non-zero if any job failed.

A job's end is seen where the job runs: in the sweep's own process with Hydra's basic
launcher, in a process of its own (on another machine, for SLURM) with the submitit
launcher. So each job leaves its record in the sweep's folder (:data:`RECORDS`), and the
summary, in the sweep's process, is made from those files.
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
from omegaconf import DictConfig

from rcnnexp.errors import UserError, unwritable_reason

log = logging.getLogger("rcnnexp")
FAILED = "failed"  # the key of a failed job's return value: its one-line message
RECORDS = ".jobs"  # <sweep dir>/.jobs/<job number>.json: each job's record, for the summary
SKIPPED = "skipped"  # a record's mark of a job that had finished before the sweep was rerun


def job_record(num: int, overrides: Sequence[str], failed: str | None, cfg: DictConfig,
               choices: Mapping[str, Any]) -> dict[str, Any]:
    """What the sweep's summary and HPARAMS table know of a job: its number and overrides,
    its failure (None: it finished), and its hyper-parameters (``cfg``: the job's config,
    Hydra's node aside; ``choices``: Hydra's ``runtime.choices``)."""
    from rcnnexp.config import to_plain
    from rcnnexp.engine.hparams import hparams_of

    return {"num": num, "overrides": " ".join(overrides), "failed": failed,
            "hparams": hparams_of(to_plain(cfg), dict(choices))}


def write_record(sweep_dir: Path, record: dict[str, Any]) -> None:
    """Keep a job's record in the sweep's folder (:data:`RECORDS`), whole or not at all."""
    folder = sweep_dir / RECORDS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['num']}.json"
    partial = path.with_suffix(".json.partial")  # whole or absent, as the summary reads it
    partial.write_text(json.dumps(record))
    partial.replace(path)


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
            job_return.hydra_cfg.hydra.runtime.choices))

    def on_multirun_end(self, config: DictConfig, **_: Any) -> None:
        from rcnnexp.engine.hparams import write_sweep_hparams

        sweep_dir = Path(str(config.hydra.sweep.dir))
        records = sorted((json.loads(p.read_text()) for p in (sweep_dir / RECORDS).glob("*.json")),
                         key=lambda r: r["num"])
        if records:
            write_sweep_hparams(sweep_dir, [r["hparams"] for r in records])
        failed = [r for r in records if r["failed"] is not None]
        # printed, not logged: the jobs' logging is gone, and Hydra's own would prefix it
        tensorboard = f"TensorBoard:   tensorboard --logdir {sweep_dir}"
        if not failed:
            earlier = sum(bool(r.get(SKIPPED)) for r in records)
            before = f", {earlier} of them before this run" if earlier else ""
            print(f"sweep done: {len(records)} jobs, all finished{before} ({sweep_dir})\n"
                  f"{tensorboard}")
            return
        lines = [f"  #{r['num']} ({r['overrides']}): {r['failed']}" for r in failed]
        print(tensorboard)
        print(f"sweep done: {len(failed)} of {len(records)} jobs failed:\n"
              + "\n".join(lines), file=sys.stderr)
        sys.exit(1)
