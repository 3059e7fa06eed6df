"""A sweep run again in its folder: which of its jobs finished, which resume, which run.

``rcnnexp train -m OVERRIDES trainer.resume=auto hydra.sweep.dir=DIR``, the same sweep into
the folder that holds it, continues it: a job that finished is skipped (its folder is not
touched, and its record is made again for the sweep's summary), a job that was interrupted
resumes from its checkpoint exactly as a single run does, and the jobs that never started
run. Each job is matched to the folder Hydra gives it (``hydra.sweep.dir`` joined with
``hydra.sweep.subdir``, resolved for the job as Hydra's launchers resolve it:
:func:`job_directory`), whatever the folders' names are made of.

Two sweeps are never mixed in one folder: a job folder whose run had other overrides
(``<folder>/.hydra/overrides.yaml``, ``trainer.resume`` aside) belongs to another sweep, and
so does a folder holding a run that is none of the sweep's jobs' (:func:`strays`); the rerun
is refused in one line (exit 2) before anything is written. So is a sweep run again into its
folder without ``trainer.resume=auto`` where any of its jobs finished or started (as for a
single run, nothing trains over a run it was not asked to continue), and one whose job still
trains in another process (each sweep job holds its folder's lock while it trains).

The CLI asks this before Hydra starts (:func:`refusal`), so that a refused sweep writes
nothing; rcnnexp's sweeper (``hydra_plugins/rcnnexp_sweeper``) asks again with the configs
its launcher will run, and launches only the jobs that did not finish.
"""

from __future__ import annotations

import copy
import os
import shlex
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict, read_write

from rcnnexp.engine.resume import RunStatus, run_status
from rcnnexp.engine.rundir import lock_holder

# (importing rcnnexp.sweep also registers the resolver that names the jobs' folders)
from rcnnexp.sweep import OVERRIDE_DIRNAME_EXCLUDE, SKIPPED, job_record, override_key

RESUME_KEY = "trainer.resume"
# the sweeper that continues a sweep (hydra_plugins/rcnnexp_sweeper): a sweep of Hydra's
# Optuna sweeper (a search, conf/search) draws its trials anew and is never continued
RESUMING_SWEEPER = "hydra_plugins.rcnnexp_sweeper.resuming_sweeper.ResumingSweeper"


class Action(Enum):
    """What a sweep run again does with one of its jobs."""

    RUN = "run"  # nothing of it was written yet: it runs
    RESUME = "resume"  # it started and was interrupted: it continues from its checkpoint
    SKIP = "skip"  # it finished: it is not run again


@dataclass(frozen=True)
class Job:
    """One job of a sweep, as its folder finds it."""

    num: int
    overrides: tuple[str, ...]  # the job's own (Hydra's task overrides)
    folder: Path
    status: RunStatus
    resume: bool  # the job's trainer.resume is auto: it continues what its folder holds
    # the overrides of the run its folder holds (.hydra/overrides.yaml), None: no record
    found: tuple[str, ...] | None
    busy: str | None = None  # the pid of a process training in its folder now

    @property
    def foreign(self) -> bool:
        """Its folder holds a job of another sweep: a run whose overrides were other, or a
        run with no record of them (nothing to tell it is this job)."""
        if self.found is None:
            return self.status != RunStatus.NEW
        return same_job(self.found) != same_job(self.overrides)

    @property
    def action(self) -> Action | None:
        """What a rerun does with it; None: it is refused (:func:`refusal` says why)."""
        if self.foreign or self.busy is not None:
            return None
        if self.status == RunStatus.NEW:
            return Action.RUN
        if not self.resume:
            return None
        return Action.SKIP if self.status == RunStatus.FINISHED else Action.RESUME

    @property
    def label(self) -> str:
        return f"#{self.num} ({' '.join(self.overrides)})"


def same_job(overrides: Sequence[str]) -> list[str]:
    """Overrides as they identify a job: in any order, and without ``trainer.resume``
    (which continuing a job adds)."""
    return sorted(o for o in overrides if override_key(o) != RESUME_KEY)


def job_directory(config: DictConfig, num: int) -> Path:
    """The folder Hydra's launchers give job ``num`` of a sweep whose job config (with
    Hydra's node, as ``load_sweep_config`` or the compose API returns it) is ``config``:
    ``hydra.sweep.dir`` joined with ``hydra.sweep.subdir``, resolved with the job's number,
    as ``hydra.core.utils.run_job`` resolves them, and made absolute."""
    from hydra.core.hydra_config import HydraConfig

    job = copy.deepcopy(config)
    with read_write(job), open_dict(job):
        job.hydra.job.num = num
        job.hydra.job.id = num  # the basic launcher's; a folder named by a SLURM job id
        # would be another folder on every submission, and could not be continued
    instance = HydraConfig.instance()
    previous = instance.cfg
    instance.set_config(job)  # for ${hydra:...} in the folder's pattern
    try:
        sweep_dir = str(OmegaConf.select(job, "hydra.sweep.dir"))
        subdir = str(OmegaConf.select(job, "hydra.sweep.subdir"))
    finally:
        instance.cfg = previous  # as it was: the sweep's own, or (the CLI) none
    return Path(os.path.abspath(os.path.join(sweep_dir, subdir)))


def read_job(config: DictConfig, num: int) -> Job:
    """Job ``num`` of a sweep (``config``: its config with Hydra's node) and what its folder
    holds."""
    folder = job_directory(config, num)
    overrides = tuple(str(o) for o in config.hydra.overrides.task)
    subdir = config.hydra.output_subdir
    found = None if subdir is None else stored_overrides(folder / str(subdir) / "overrides.yaml")
    return Job(num, overrides, folder, run_status(folder, bool(config.trainer.retrain)),
               config.trainer.resume == "auto", found, lock_holder(folder))


def stored_overrides(path: Path) -> tuple[str, ...] | None:
    """The overrides Hydra recorded for the job that ran in a folder; None: none recorded
    (or unreadable)."""
    try:
        stored = OmegaConf.load(path)
    except Exception:  # absent or damaged: no record to match
        return None
    return tuple(str(o) for o in stored) if isinstance(stored, ListConfig) else None


def strays(jobs: Sequence[Job], sweep_dir: Path) -> list[Path]:
    """The folders in ``sweep_dir`` that hold a run (finished or started) and are none of
    ``jobs``' folders: another sweep's jobs, or this sweep's under other names (its folders
    are named by the values that tell its jobs apart: another key swept renames them)."""
    own = {j.folder for j in jobs}
    try:
        found = sorted(d for d in sweep_dir.iterdir() if d.is_dir())
    except OSError:  # not there (a new sweep), or not a folder: nothing of another sweep
        return []
    return [d for d in found if d.absolute() not in own
            and run_status(d, retrain=True) != RunStatus.NEW]  # either stage layout


def refusal(jobs: Sequence[Job], sweep_dir: Path) -> str | None:
    """Why the sweep ``jobs`` cannot run into ``sweep_dir`` (one line), or None."""
    others = strays(jobs, sweep_dir)
    if others:
        named = ", ".join(d.name for d in others[:3]) + (
            f" and {len(others) - 3} more" if len(others) > 3 else "")
        return (f"hydra.sweep.dir={sweep_dir} holds runs in folders that are none of this "
                f"sweep's jobs' ({named}): another sweep's, or this one's with other values "
                f"swept; continue that sweep with its own overrides (in "
                f"{sweep_dir / 'multirun.yaml'}), or give this one another folder "
                "(hydra.sweep.dir=...)")
    foreign = next((j for j in jobs if j.foreign), None)
    if foreign is not None:
        had, has = same_job(foreign.found or ()), same_job(foreign.overrides)
        if foreign.found is None:
            ran = "a run with no record of its overrides (.hydra/overrides.yaml)"
        else:
            ran = " ".join(o for o in had if o not in has) or "(none)"
        wanted = " ".join(o for o in has if o not in had) or "(none)"
        return (f"hydra.sweep.dir={sweep_dir} holds another sweep: its job #{foreign.num} "
                f"({foreign.folder}) ran {ran}, where this sweep's #{foreign.num} has "
                f"{wanted}; continue that sweep with its own overrides (in "
                f"{sweep_dir / 'multirun.yaml'}), or give this one another folder "
                "(hydra.sweep.dir=...)")
    busy = next((j for j in jobs if j.busy is not None), None)
    if busy is not None:
        return (f"hydra.sweep.dir={sweep_dir}: job #{busy.num} ({busy.folder}) is training "
                f"in another rcnnexp process (pid {busy.busy}), an earlier run of this sweep "
                "whose jobs outlived it; wait for its jobs to end (or end them), then continue "
                "the sweep")
    held = [j for j in jobs if j.action is None]
    if not held:
        return None
    finished = sum(j.status == RunStatus.FINISHED for j in held)
    return (f"hydra.sweep.dir={sweep_dir} already holds this sweep ({finished} of its "
            f"{len(jobs)} jobs finished, {len(held) - finished} started); continue it with "
            f"{RESUME_KEY}=auto (the finished jobs are skipped, the started ones resume), or "
            "give a new sweep another folder (hydra.sweep.dir=...)")


def plan_lines(jobs: Sequence[Job], sweep_dir: Path) -> list[str]:
    """What a rerun will do, said before it starts: a line for the sweep, and one for each
    job it skips or resumes (none for a sweep with nothing in its folder yet)."""
    skipped = [j for j in jobs if j.action == Action.SKIP]
    resumed = [j for j in jobs if j.action == Action.RESUME]
    if not skipped and not resumed:
        return []
    lines = [f"continuing the sweep in {sweep_dir} ({len(jobs)} jobs): {len(skipped)} "
             f"finished before (skipped), {len(resumed)} resume from their checkpoints, "
             f"{len(jobs) - len(skipped) - len(resumed)} to run"]
    lines += [f"  skipped {j.label}: finished ({j.folder / 'results.json'})" for j in skipped]
    lines += [f"  resumes {j.label}: from its checkpoint in {j.folder}" for j in resumed]
    return lines


def status_note(job: Job) -> str:
    """A dry run's word on what the job's folder holds (empty: nothing yet)."""
    action = job.action
    if job.foreign:
        return f"its folder {job.folder} holds another sweep's job"
    if job.busy is not None:
        return f"training now in another process (pid {job.busy})"
    if action == Action.SKIP:
        return "finished: skipped"
    if action == Action.RESUME:
        return "interrupted: resumes from its checkpoint"
    if action is None:  # finished or started, and no trainer.resume=auto
        return (f"{job.status.value} in {job.folder}: {RESUME_KEY}=auto continues it")
    return ""


def launches(jobs: Sequence[Job], overrides: Sequence[Sequence[str]],
             max_batch_size: int | None) -> Iterator[tuple[int, list[Sequence[str]]]]:
    """The launches that run every job not skipped, keeping each job's number: each a run
    of consecutive jobs (a launcher numbers a launch's jobs from its first one), at most
    ``max_batch_size`` long (Hydra's basic sweeper's batches)."""
    run: list[int] = []
    for job in [*jobs, None]:
        if job is not None and job.action != Action.SKIP:
            run.append(job.num)
            if max_batch_size is None or max_batch_size < 1 or len(run) < max_batch_size:
                continue
        if run:
            yield run[0], [overrides[n] for n in run]
        run = []


def skipped_record(job: Job, config: DictConfig) -> dict[str, Any]:
    """The sweep summary's record of a job skipped as finished (:mod:`rcnnexp.sweep`), made
    from the job's config as the rerun composes it: its overrides are the finished run's,
    so is its config (a resumed job whose preset changed since is refused by the resume
    check; a skipped one's columns in the HPARAMS table would show today's preset)."""
    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        choices = task.hydra.runtime.choices
        del task["hydra"]
    return {**job_record(job.num, job.overrides, None, task, choices, job.folder),
            SKIPPED: True}


def continue_command(sweep_config: DictConfig) -> list[str] | None:
    """The command that continues a sweep after an interrupt: its command line (as its
    folder's ``multirun.yaml`` records it) with ``trainer.resume=auto`` and its folder;
    None for a sweep that cannot be continued (a search's trials are drawn anew) or whose
    record is not there."""
    if sweep_config.hydra.sweeper.get("_target_") != RESUMING_SWEEPER:
        return None
    sweep_dir = Path(os.path.abspath(str(sweep_config.hydra.sweep.dir)))
    try:
        recorded = OmegaConf.load(sweep_dir / "multirun.yaml").hydra.overrides
    except Exception:  # not written yet, or damaged: no command to give
        return None
    task = [str(o) for o in recorded.task if override_key(str(o)) != RESUME_KEY]
    # without what the CLI adds (the folders' naming, made again from the jobs: continuing
    # adds trainer.resume to all of them, which their folders' names leave out) and Hydra
    own = [str(o) for o in recorded.hydra if override_key(str(o))
           not in ("hydra.sweep.dir", "hydra.mode", OVERRIDE_DIRNAME_EXCLUDE)]
    return ["rcnnexp", "train", "-m", *task, *own, f"{RESUME_KEY}=auto",
            f"hydra.sweep.dir={sweep_dir}"]


def stop_interrupted(err: BaseException, sweep_config: DictConfig) -> NoReturn:
    """Ctrl-C or SIGTERM (``err``) while a sweep launches its jobs, outside their training
    (a job setting up; the submitit launcher waiting on its jobs, which the terminal's
    Ctrl-C also reaches): one line naming the command that continues the whole sweep, and
    the shell's code, 128 + the signal. Inside training, the job says it itself."""
    signum = signal.SIGINT if isinstance(err, KeyboardInterrupt) else signal.SIGTERM
    name = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else "SIGTERM"
    command = continue_command(sweep_config)
    then = f"; continue with: {shlex.join(command)}" if command is not None else ""
    print(f"error: interrupted by {name}: the sweep stopped before it finished{then}",
          file=sys.stderr)
    sys.exit(128 + signum)


__all__ = ["RESUMING_SWEEPER", "Action", "Job", "continue_command", "job_directory", "launches",
           "plan_lines", "read_job", "refusal", "skipped_record", "status_note",
           "stop_interrupted"]
