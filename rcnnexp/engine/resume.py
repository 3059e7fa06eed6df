"""Continuing a run: where it stopped, whether a checkpoint fits it, and how to say so.

A run is resumed from its last checkpoint (``trainer.resume=auto``) or from a given one
(``trainer.resume=PATH``); a run directory that holds a run is never trained into afresh.
Signals that end training (Ctrl-C, SIGTERM from a scheduler, the signal submitit's SLURM
jobs get before their time limit) stop it at the next step, with a checkpoint of that step
(:func:`deferred_interrupts`), after which the CLI prints the command that continues the
run, and a job that submitit watches is requeued to continue it.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from rcnnexp.config import with_new_keys
from rcnnexp.config.trainer import resolved_settings
from rcnnexp.engine.checkpoint import TRAINING_KEYS, config_differences, load_checkpoint
from rcnnexp.engine.stages import Stage, plan_stages
from rcnnexp.errors import CheckpointError, ConfigError

# config keys that change nothing a run computes: how it is watched and saved, where it runs
# and in which kernels (compile, channels_last: the same sums), where its data lies (the
# same files, moved: a run continued on another machine, or on a node's local copy), and
# what only describes it (the paper's row it is compared with; the pretrained checkpoints a
# table offers, whose use is finetune.checkpoint, compared itself). The report compares a
# run's config with its preset's as it composes today on every other key
# (rcnnexp/report/protocol.py)
RUN_DESCRIPTION = ("trainer.resume", "trainer.progress", "trainer.workers", "trainer.device",
                   "trainer.eval_batch_size", "trainer.log_every", "paper",
                   "finetune.pretrained", "trainer.compile", "trainer.channels_last",
                   "trainer.checkpoint_every_steps", "trainer.checkpoint_every_minutes",
                   "trainer.threads", "dataset.root", "dataset.download")
# keys that may differ between a checkpoint and the run that resumes it: those, and the
# epochs, which a resumed run may extend
RESUMABLE_CHANGES = (*RUN_DESCRIPTION, "trainer.epochs")


@dataclass
class ResumePoint:
    """The stage a run (re)starts with, and the checkpoint it continues from, if any."""

    stage: int = 0
    path: Path | None = None
    checkpoint: dict[str, Any] | None = None


def holds_a_run(stage: Stage) -> bool:
    return ((stage.directory / "checkpoints" / "last.pt").exists()
            or (stage.directory / "results.json").exists())


class RunStatus(Enum):
    """How far the run in a directory got, as a sweep run again in its folder asks of each
    job's (:func:`run_status`)."""

    NEW = "new"  # nothing to continue: no checkpoint, no results
    STARTED = "started"  # a stage's checkpoint or stage 1's results, no run results yet
    FINISHED = "finished"  # the run's results.json, written whole at its end


def run_status(run_dir: Path, retrain: bool) -> RunStatus:
    """Whether the run in ``run_dir`` finished, started (``trainer.resume=auto`` continues
    it) or holds nothing to continue. Its results.json is the last stage's, renamed into
    place whole once the run ended: one that reads as a JSON object is a finished run's; a
    damaged one is not, and the run is resumed (or, with no checkpoint, started over)."""
    try:
        finished = isinstance(json.loads((run_dir / "results.json").read_text()), dict)
    except (OSError, ValueError):
        finished = False
    if finished:
        return RunStatus.FINISHED
    if any(holds_a_run(s) for s in plan_stages(run_dir, retrain)):
        return RunStatus.STARTED
    return RunStatus.NEW


def already_holds_a_run(run_dir: Path) -> ConfigError:
    """The refusal of a fresh run in a directory that holds one (the command line's check,
    before Hydra writes, and the engine's, for a sweep's jobs, say the same)."""
    return ConfigError(f"run directory {run_dir} already holds a run; continue it with "
                       "trainer.resume=auto, or start a new run in another directory "
                       "(hydra.run.dir=...)")


def resume_point(stages: list[Stage], resume: str | None) -> ResumePoint:
    """Where to (re)start, refusing to start over an earlier run.

    ``auto`` continues the latest stage that has a checkpoint, or starts the stage after
    the last one that finished (between stages: none of the next has been written yet).
    """
    run_dir = stages[-1].directory
    if resume is None:
        if any(holds_a_run(s) for s in stages):
            raise already_holds_a_run(run_dir)
        return ResumePoint()
    if resume == "auto":
        for i in reversed(range(len(stages))):
            last = stages[i].directory / "checkpoints" / "last.pt"
            if last.exists():
                return ResumePoint(i, last, load_checkpoint(last, needs=TRAINING_KEYS))
            if i > 0 and (stages[i - 1].directory / "results.json").exists():
                return ResumePoint(i)
        return ResumePoint()
    path = Path(resume)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt" if (path / "checkpoints").is_dir() else path
    if not path.is_file():
        there = "a directory without checkpoints/" if path.is_dir() else "no checkpoint there"
        raise CheckpointError(f"trainer.resume={resume}: {there} (expected a .pt file such "
                              "as <run dir>/checkpoints/last.pt, or 'auto')")
    ckpt = load_checkpoint(path, needs=TRAINING_KEYS)
    names = [s.name for s in stages]
    stage = ckpt.get("stage", "train")
    if stage not in names:
        raise CheckpointError(f"trainer.resume={resume} is a checkpoint of a {stage!r} stage; "
                              f"this run's stages are {', '.join(names)} (trainer.retrain "
                              "decides them)")
    return ResumePoint(names.index(stage), path, ckpt)


def finished_tune(stages: list[Stage], point: ResumePoint) -> dict[str, Any] | None:
    """Stage 1's results when the run (re)starts after it: from the stage-2 checkpoint, or
    from the results.json stage 1 wrote."""
    if point.stage == 0:
        return None
    if point.checkpoint is not None and "tune" in point.checkpoint:
        return dict(point.checkpoint["tune"])
    path = stages[point.stage - 1].directory / "results.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} cannot be read ({err}); it holds stage 1's results, "
                              "which stage 2 needs: delete the run directory's checkpoints/ "
                              "to redo stage 2, or the whole directory to start over") from None


def check_same_run(ckpt: dict[str, Any], plain: dict[str, Any], source: Path, *,
                   device_type: str | None = None) -> None:
    """A resumed run must be configured as the run that wrote the checkpoint.

    With ``device_type`` (where the resumed run trains), the trainer keys whose ``auto``
    depends on the device compare as what they resolve to there: a run written before
    ``trainer.precision=auto`` (with fp32) resumes on CPU under the new default.
    """
    stored = with_new_keys(ckpt.get("config", {}))
    if device_type is not None:
        stored, plain = (resolved_settings(c, device_type) for c in (stored, plain))
    diffs = [d for d in config_differences(stored, plain)
             if not d.startswith(RESUMABLE_CHANGES)]
    if not diffs:
        return
    overrides = " ".join(ckpt.get("overrides", [])) or "(none)"
    raise CheckpointError(
        f"checkpoint {source} was written by a run with another config:\n  "
        + "\n  ".join(diffs[:10])
        + (f"\n  ... and {len(diffs) - 10} more" if len(diffs) > 10 else "")
        + f"\nResume with the overrides that run started with: {overrides}")


def resume_hint(overrides: list[str], run_dir: Path, resumable: bool,
                launcher: Sequence[str] = (), command: Sequence[str] | None = None) -> str:
    """The command that continues an interrupted run (shell-quoted), or why there is none;
    ``launcher``: the words that started ``rcnnexp`` (torchrun's), which start it again.

    ``command``: the run's continuation when it is not the run alone: a sweep's job is
    continued by its sweep's command, which also runs the jobs after it (and starts this
    one over when it saved nothing)."""
    if command is None:
        if not resumable:
            return "nothing was saved, nothing to resume"
        args = [o for o in overrides if not o.startswith(("trainer.resume=", "hydra.run.dir="))]
        command = [*launcher, "rcnnexp", "train", *args, "trainer.resume=auto",
                   f"hydra.run.dir={run_dir}"]
    return "continue with: " + shlex.join(command)


class Interrupted(BaseException):
    """SIGTERM or Ctrl-C during training (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


def preemption_signal() -> signal.Signals:
    """The signal submitit gives a SLURM job before its time limit (``#SBATCH
    --signal=USR2@N``) or at preemption, named as submitit reads it: SUBMITIT_PREEMPT_SIGNAL,
    USR2 by default."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return getattr(signal, f"SIG{name}", signal.SIGUSR2)


Handler = Callable[[int, object], object]


@dataclass
class StopRequest:
    """The signal that asked training to stop, once one has (None until then)."""

    signum: int | None = None
    # the preemption signal's handler before training (submitit's, which requeues the job),
    # given the signal once the stop's checkpoint is written (pass_on)
    requeue: Handler | None = None

    def pass_on(self) -> None:
        """After the checkpoint of a stop by the preemption signal: the handler that signal
        had before training, if any (submitit's saves the job's submission, requeues it with
        SLURM and exits; on ranks other than 0 it does nothing)."""
        if self.signum == preemption_signal() and self.requeue is not None:
            self.requeue(self.signum, None)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def deferred_interrupts() -> Iterator[StopRequest]:
    """While training, a first SIGTERM (schedulers, `kill`), Ctrl-C or preemption signal
    (:func:`preemption_signal`) only asks to stop.

    The trainer stops at the next step boundary, where its state is whole and can be saved
    (an interrupt raised inside an optimizer step could not be); a second signal stops at
    once, raising :class:`Interrupted` wherever the run is. Without this, submitit's own
    handler would requeue the job from inside whatever step the signal fell in, and the
    requeued job would continue from the last checkpoint written before it.
    """
    request = StopRequest()

    def handler(signum: int, _frame: object) -> None:
        if request.signum is not None:
            raise Interrupted(signum)
        request.signum = signum

    signals = dict.fromkeys((*STOP_SIGNALS, preemption_signal()))
    try:
        previous = {s: signal.signal(s, handler) for s in signals}
    except ValueError:  # not the main thread: leave signals alone
        yield request
        return
    earlier = previous[preemption_signal()]
    if callable(earlier) and preemption_signal() not in STOP_SIGNALS:
        request.requeue = earlier
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


__all__ = ["RESUMABLE_CHANGES", "RUN_DESCRIPTION", "Interrupted", "ResumePoint", "RunStatus",
           "StopRequest", "check_same_run", "deferred_interrupts", "finished_tune",
           "resume_hint", "resume_point", "run_status"]
