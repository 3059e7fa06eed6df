"""The training loop: epochs of steps, evaluation, checkpoints, and everything they log.

:class:`Trainer` is given built objects (model, data, optimizer, schedule) and never looks
at which family or dataset they are. Its whole state, RNGs included, goes into each
checkpoint, and an epoch is a function of that state and the epoch's own generator, so a
run resumed from ``last.pt`` ends exactly where an uninterrupted one does (on CPU).
"""

from __future__ import annotations

import itertools
import math
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rcnnexp.config.trainer import TrainerConfig
from rcnnexp.data.base import DataModule
from rcnnexp.engine.checkpoint import (
    checkpoint_epoch,
    copy_checkpoint,
    load_model_state,
    save_checkpoint,
)
from rcnnexp.engine.distributed import (
    all_reduce_sum,
    broadcast_buffers,
    gather_objects,
    per_rank_batch,
)
from rcnnexp.engine.evaluate import evaluate, topk_correct
from rcnnexp.engine.logger import RunLogger
from rcnnexp.engine.progress import Progress
from rcnnexp.engine.resume import Interrupted, StopRequest
from rcnnexp.engine.runtime import (
    Runtime,
    augmentation_generator,
    epoch_generator,
    rng_state,
    set_rng_state,
)
from rcnnexp.engine.schedules import Schedule
from rcnnexp.errors import TrainingDiverged


def train_steps_per_epoch(data: DataModule, batch_size: int, world_size: int,
                          limit_batches: int | None) -> int:
    """Optimizer steps an epoch: the data's batches (``batch_size`` per process), at most
    ``limit_batches`` in a check run. The schedules count their steps with it, so that a
    check run's learning rate runs its whole course in the steps it has."""
    total = data.num_train_batches(batch_size, world_size)
    return total if limit_batches is None else min(total, limit_batches)


# the per-epoch scalars again, under this prefix with the epoch as their step: curves of runs
# with other batch sizes (other steps an epoch) line up there
EPOCH_AXIS = "epoch/"


def epoch_curves(row: dict[str, Any]) -> dict[str, float]:
    """An epoch's row (metrics.csv's) as the tags it has on the step axis: ``val_top1`` ->
    ``val/top1``, ``train_loss`` -> ``train/loss``, ``lr`` -> ``train/lr``, the timings
    under ``time/``."""
    tags = {"lr": "train/lr", "epoch_time_s": "time/epoch_time_s",
            "images_per_s": "time/images_per_s"}
    return {tags.get(key, key.replace("_", "/", 1)): value for key, value in row.items()
            if key != "epoch"}


@dataclass
class TrainState:
    """Counters that, with the module states, define where a run is."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed optimizer steps
    best_val_top1: float | None = None
    best_epoch: int | None = None
    elapsed_s: float = 0.0  # wall time spent in earlier processes of this run
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch
    # in a checkpoint saved inside an epoch (an interrupt): the batches of epoch `epoch` + 1
    # done, and their sums over all ranks (loss, correct, images; then the same since the
    # last log)
    batch: int = 0
    epoch_sums: list[float] = field(default_factory=list)


class Trainer:
    def __init__(self, model: torch.nn.Module, data: DataModule,
                 optimizer: torch.optim.Optimizer, schedule: Schedule, runtime: Runtime,
                 config: TrainerConfig, logger: RunLogger, progress: Progress,
                 checkpoint_dir: Path, checkpoint_meta: dict[str, Any],
                 train_model: torch.nn.Module | None = None) -> None:
        self.model = model  # what checkpoints hold and evaluation calls
        # what a training step calls: the model, or a compiled / channels_last form of it
        # sharing its parameters (acceleration.accelerate), in DDP when several processes run
        self.train_model = model if train_model is None else train_model
        self.data = data
        self.optimizer = optimizer
        self.schedule = schedule
        self.runtime = runtime
        self.cfg = config
        self.logger = logger
        self.progress = progress
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_meta = checkpoint_meta  # config and overrides, stored in checkpoints
        self.scaler = runtime.grad_scaler()
        self.state = TrainState()
        self.stopped_early = False
        self._started = time.perf_counter()
        self._saved_at = self._started  # the last checkpoint (trainer.checkpoint_every_minutes)

    # -- checkpoints --------------------------------------------------------------------------
    def checkpoint(self, rngs: list[dict[str, Any]]) -> dict[str, Any]:
        """The whole state, with ``rngs``, every rank's random states in rank order: rank
        0's as ``rng`` (all a one-process run has), all of them as ``rng_ranks``."""
        ckpt = {
            **self.checkpoint_meta,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "state": {**asdict(self.state), "elapsed_s": self.elapsed_s},
            "rng": rngs[0],
        }
        if len(rngs) > 1:
            ckpt["rng_ranks"] = rngs
        return ckpt

    def restore(self, ckpt: dict[str, Any], source: Path) -> None:
        """Continue from ``ckpt`` (read from ``source``): modules, counters and every RNG as
        they were saved, and a best.pt that holds the epoch the state calls best."""
        load_model_state(self.model, ckpt["model"], str(source))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["schedule"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState(**ckpt["state"])
        # each rank its own stream; a rank the checkpoint has none for (it was written by
        # fewer processes) keeps the one it was seeded with
        states = ckpt.get("rng_ranks", [ckpt["rng"]])
        if self.runtime.rank < len(states):
            set_rng_state(states[self.runtime.rank])
        if self.runtime.is_main:
            self.restore_best(source)

    def restore_best(self, source: Path) -> None:
        """Make best.pt hold the best epoch of the restored state.

        best.pt is copied from last.pt after last.pt is written, so a run killed between the
        two leaves a best.pt of an earlier epoch, or none. The resumed checkpoint is then the
        best one itself; a checkpoint resumed into another directory brings its best.pt.
        """
        best_epoch = self.state.best_epoch
        best = self.checkpoint_dir / "best.pt"
        if best_epoch is None or checkpoint_epoch(best) == best_epoch:
            return
        if best_epoch == self.state.epoch and self.state.batch == 0:
            copy_checkpoint(source, best)
        elif best != source.parent / "best.pt" and checkpoint_epoch(
                source.parent / "best.pt") == best_epoch:
            copy_checkpoint(source.parent / "best.pt", best)
        else:
            self.progress.info(f"warning: no best.pt holds epoch {best_epoch}, the best so far "
                               f"(by {source}); {best} will be written when an epoch is better")

    def save(self, is_best: bool) -> None:
        """last.pt (and best.pt) by rank 0, with every rank's random states (all ranks call
        this: the states are gathered)."""
        rngs = gather_objects(rng_state())
        self._saved_at = time.perf_counter()  # (on every rank: they decide on it together)
        if rngs is None:
            return
        last = self.checkpoint_dir / "last.pt"
        save_checkpoint(last, self.checkpoint(rngs))
        if is_best:
            copy_checkpoint(last, self.checkpoint_dir / "best.pt")

    def save_inside_epoch(self, epoch: int, batch: int, sums: torch.Tensor,
                          window: torch.Tensor) -> None:
        """last.pt after ``batch`` batches of ``epoch``: what an interrupted run resumes
        (``window``: this rank's sums since the last log, summed here over all ranks)."""
        window = all_reduce_sum(window.clone())
        self.check_finite(float(window[0]), epoch)
        self.state.batch = batch
        self.state.epoch_sums = [*sums.tolist(), *window.tolist()]
        self.save(is_best=False)
        self.logger.flush()

    def check_finite(self, loss_sum: float, epoch: int) -> None:
        """Stop a diverged run before it saves: last.pt keeps the last finite state."""
        if math.isfinite(loss_sum):
            return
        kept = (f"{self.checkpoint_dir / 'last.pt'} keeps epoch {self.state.epoch}, the last "
                "finite state" if self.state.epoch else "no checkpoint was written")
        raise TrainingDiverged(
            f"the training loss is {loss_sum} in epoch {epoch + 1} (by step "
            f"{self.state.step}): training diverged and stopped; {kept}; start again with a "
            f"lower learning rate (it was {self.optimizer.param_groups[0]['lr']:g} at that "
            "step: optim.lr, schedule)")

    def checkpoint_due(self, clock_due: bool) -> bool:
        """Whether a checkpoint is due after this step: every ``trainer.checkpoint_every_steps``
        steps, or when ``clock_due`` (:meth:`minutes_due` on any rank at the last log step)."""
        steps = self.cfg.checkpoint_every_steps
        return clock_due or (steps is not None and self.state.step % steps == 0)

    def minutes_due(self) -> bool:
        """Whether ``trainer.checkpoint_every_minutes`` have passed since the last checkpoint.
        Read at log steps only (every ``log_every``), where the processes of a distributed
        run meet anyway and agree on it: their clocks differ."""
        minutes = self.cfg.checkpoint_every_minutes
        return minutes is not None and time.perf_counter() - self._saved_at >= 60 * minutes

    @property
    def elapsed_s(self) -> float:
        return self.state.elapsed_s + time.perf_counter() - self._started

    # -- the loop -----------------------------------------------------------------------------
    def fit(self, stop: StopRequest | None = None) -> None:
        """Train the remaining epochs; on a ``stop`` request, save and raise Interrupted
        after the current step (inside an epoch) or after the epoch's checkpoint."""
        stop = stop or StopRequest()
        for epoch in range(self.state.epoch, self.cfg.epochs):
            row = {"epoch": epoch + 1, **self.train_epoch(epoch, stop)}
            if (epoch + 1) % self.cfg.eval_every == 0 or epoch + 1 == self.cfg.epochs:
                row.update(self.evaluate_splits(epoch + 1))
                self.schedule.on_eval(row)
            is_best = self._update_best(row)
            self.state.epoch = epoch + 1
            self.state.history.append(row)
            self.logger.metrics_csv(self.state.history)
            self.save(is_best)
            # logged once the epoch is in a checkpoint, so that a resumed run never logs an
            # epoch twice: resuming, TensorBoard drops what came after the checkpoint's step,
            # which an epoch number (at most the steps done) never reaches
            self.logger.scalars(epoch_curves(row), epoch + 1, prefix=EPOCH_AXIS)
            self.logger.flush()
            self.progress.epoch_done(self._epoch_line(row))
            # asked of any rank during the epoch or since: the checkpoint of every rank is
            # saved either way
            signum = self.agreed_stop(stop)
            if signum is not None:
                raise Interrupted(signum)
            if self.schedule.should_stop:
                self.stopped_early = True
                self.progress.info(f"schedule exhausted after epoch {epoch + 1}: stopping")
                break

    def agreed_stop(self, stop: StopRequest) -> int | None:
        """The signal to stop on now: this process's, or in a distributed run any rank's, so
        that all ranks stop together (a rank asked a moment after this stops with the others
        at the next log step)."""
        if self.runtime.world_size == 1:
            return stop.signum
        asked = all_reduce_sum(torch.tensor([float(stop.signum is not None)],
                                            dtype=torch.float64, device=self.runtime.device))
        return (stop.signum or signal.SIGTERM) if asked[0] > 0 else None

    def train_epoch(self, epoch: int, stop: StopRequest) -> dict[str, float]:
        """One epoch's steps, from the batch a mid-epoch checkpoint stopped at, if any."""
        model, runtime, cfg = self.train_model, self.runtime, self.cfg
        model.train()
        batch_size = per_rank_batch(cfg.batch_size, runtime.world_size)
        total = train_steps_per_epoch(self.data, batch_size, runtime.world_size,
                                      cfg.limit_batches)
        generator = epoch_generator(cfg.seed, epoch, runtime.device)
        augment = augmentation_generator(cfg.seed, epoch, runtime.rank, runtime.world_size,
                                         generator)
        batches = self.data.train_batches(batch_size, generator, runtime.rank,
                                          runtime.world_size, augment)
        # loss, correct, n over all ranks; and this rank's since the last step-level log
        done = torch.tensor(self.state.epoch_sums or [0.0] * 6, dtype=torch.float64,
                            device=runtime.device)
        sums, window = done[:3].clone(), done[3:].clone()
        if not runtime.is_main:  # the saved window is all ranks': rank 0 carries it
            window.zero_()
        # the skipped batches are drawn all the same: the generator then stands where it did;
        # a check run stops drawing at its limit
        first = self.state.batch
        batches = itertools.islice(batches, first, total)
        start = time.perf_counter()
        window_start, window_images = start, 0
        lr = float(self.optimizer.param_groups[0]["lr"])  # (an epoch resumed at its end)
        # nothing in a step reads a value back from the device (a host sync): the sums
        # stay there and are read once per log_every
        for i, (x, y) in enumerate(self.progress.batches(batches, total - first, epoch), first):
            lr = self.schedule.step()
            with runtime.autocast():
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.state.step += 1
            with torch.no_grad():
                window[0] += loss.detach() * len(y)
                window[1] += topk_correct(logits.detach(), y, 1)
                window[2] += len(y)
            window_images += len(y)
            # one process stops at the next step; several agree at a log point first
            stopping = stop.signum if runtime.world_size == 1 else None
            clock_due = False
            if self.state.step % cfg.log_every == 0:
                # every rank's window, images seen by this process, stop requests and
                # checkpoints due by the clock, summed
                reduced = all_reduce_sum(torch.cat([window, window.new_tensor(
                    [window_images, stop.signum is not None, self.minutes_due()])]))
                window.copy_(reduced[:3])
                loss_w, correct_w, n_w = window.tolist()
                self.check_finite(loss_w, epoch)
                now = time.perf_counter()
                ips = float(reduced[3]) / max(now - window_start, 1e-9)
                if reduced[4] > 0:  # a rank was asked to stop: all stop here, together
                    stopping = stop.signum or signal.SIGTERM
                clock_due = bool(reduced[5] > 0)
                self.logger.scalars({"lr": lr, "loss_step": loss_w / n_w,
                                     "top1_step": 100 * correct_w / n_w, "images_per_s": ips},
                                    self.state.step, prefix="train/")
                self.progress.postfix(loss=loss_w / n_w, acc=100 * correct_w / n_w, img_s=ips)
                sums += window
                window.zero_()
                window_start, window_images = now, 0
            if stopping is not None:
                self.save_inside_epoch(epoch, i + 1, sums, window)
                raise Interrupted(stopping)
            if i + 1 < total and self.checkpoint_due(clock_due):  # (an epoch's end saves)
                self.save_inside_epoch(epoch, i + 1, sums, window)
        self.state.batch, self.state.epoch_sums = 0, []
        sums += all_reduce_sum(window)
        loss_sum, correct, n = sums.tolist()
        seconds = time.perf_counter() - start
        self.check_finite(loss_sum, epoch)
        n = max(n, 1.0)
        metrics = {"lr": lr, "train_loss": loss_sum / n, "train_top1": 100 * correct / n,
                   "epoch_time_s": seconds, "images_per_s": n / max(seconds, 1e-9)}
        step = self.state.step
        self.logger.scalars({"loss": metrics["train_loss"], "top1": metrics["train_top1"]},
                            step, prefix="train/")
        self.logger.scalars({"epoch_time_s": seconds, "images_per_s": metrics["images_per_s"]},
                            step, prefix="time/")
        return metrics

    def evaluate_splits(self, epoch: int) -> dict[str, float]:
        out: dict[str, float] = {}
        for split in ("val", "test"):
            if split not in self.data.splits or (split == "test" and not self.cfg.eval_test):
                continue
            broadcast_buffers(self.model)  # every rank scores the model rank 0 saves
            metrics = evaluate(self.model, self.data, split, self.cfg.eval_batch_size,
                               self.runtime, self.cfg.limit_batches)
            self.logger.scalars(metrics, self.state.step, prefix=f"{split}/")
            out.update({f"{split}_{k}": v for k, v in metrics.items()})
        return out

    def _update_best(self, row: dict[str, Any]) -> bool:
        """Best by validation top-1; with no validation split, the latest evaluation."""
        if "val_top1" in row:
            if self.state.best_val_top1 is None or row["val_top1"] > self.state.best_val_top1:
                self.state.best_val_top1 = row["val_top1"]
                self.state.best_epoch = row["epoch"]
                return True
            return False
        if "test_top1" in row:
            self.state.best_epoch = row["epoch"]
            return True
        return False

    @staticmethod
    def _epoch_line(row: dict[str, Any]) -> str:
        parts = [f"epoch {row['epoch']:>3}", f"lr {row['lr']:.3g}",
                 f"loss {row['train_loss']:.4f}", f"train {row['train_top1']:.2f}%"]
        for split in ("val", "test"):
            if f"{split}_top1" in row:
                parts.append(f"{split} {row[f'{split}_top1']:.2f}%")
        parts.append(f"{row['images_per_s']:.0f} img/s")
        parts.append(f"{row['epoch_time_s']:.1f}s")
        return " | ".join(parts)
