"""What a sweep (``rcnnexp train -m``) adds to its jobs: every failure reported, a summary.

Hydra's basic sweeper re-raises a job's exception once the batch has run, which would end
the sweep with one traceback and no word about the other jobs. So a sweep job never raises:
:func:`failed_job` turns its error (a user error or a crash) into a record that the job
returns, and :class:`SweepReport` lists those records after the last job, writes the
sweep's HPARAMS table (:mod:`rcnnexp.engine.hparams`) and exits non-zero if any job failed.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from rcnnexp.errors import UserError

log = logging.getLogger("rcnnexp")
FAILED = "failed"  # the key of a failed job's return value: its one-line message


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

    It only acts on sweeps (``on_multirun_start``); a single run has no job number and
    nothing to summarize.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sweeping = False
        self.failed: list[tuple[int, str, str]] = []
        self.jobs: list[dict[str, Any]] = []  # each job's hyper-parameters, in job order

    def on_multirun_start(self, config: DictConfig, **_: Any) -> None:
        self.sweeping = True

    def on_job_end(self, config: DictConfig, job_return: Any, **_: Any) -> None:
        from hydra.core.utils import JobStatus

        if not self.sweeping:
            return
        from rcnnexp.config import to_plain
        from rcnnexp.engine.hparams import hparams_of

        # a sweep job returns its failure (failed_job) rather than raising it
        value = job_return.return_value if job_return.status == JobStatus.COMPLETED else None
        if isinstance(value, dict) and FAILED in value:
            self.failed.append((config.hydra.job.num, " ".join(job_return.overrides or []),
                                value[FAILED]))
        choices = dict(job_return.hydra_cfg.hydra.runtime.choices)
        self.jobs.append(hparams_of(to_plain(job_return.cfg), choices))

    def on_multirun_end(self, config: DictConfig, **_: Any) -> None:
        from rcnnexp.engine.hparams import write_sweep_hparams

        sweep_dir = Path(str(config.hydra.sweep.dir))
        if self.jobs:
            write_sweep_hparams(sweep_dir, self.jobs)
        # printed, not logged: the jobs' logging is gone, and Hydra's own would prefix it
        tensorboard = f"TensorBoard:   tensorboard --logdir {sweep_dir}"
        if not self.failed:
            print(f"sweep done: {len(self.jobs)} jobs, all finished ({sweep_dir})\n{tensorboard}")
            return
        lines = [f"  #{num} ({overrides}): {message}" for num, overrides, message in self.failed]
        print(tensorboard)
        print(f"sweep done: {len(self.failed)} of {len(self.jobs)} jobs failed:\n"
              + "\n".join(lines), file=sys.stderr)
        sys.exit(1)
