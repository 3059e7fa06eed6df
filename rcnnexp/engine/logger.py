"""What a run writes besides checkpoints: TensorBoard events, metrics.csv, results.json.

Only the main process writes (``enabled`` is ``Runtime.is_main``); elsewhere every method
is a no-op, so the training loop never asks which rank it is on.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rcnnexp.engine.hparams import FINAL_METRICS, FINAL_RUN, HParam, session_end, session_start
from rcnnexp.engine.storage import NO_SPACE, atomic_write, no_space_error

TB_FOLDER = "tb"  # a run's TensorBoard events: <run dir>/tb

class RunLogger:
    def __init__(self, run_dir: Path, enabled: bool = True, purge_step: int | None = None
                 ) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self.writer = None
        if enabled:
            # imported here: TensorBoard's import is slow and only the main rank needs it
            from torch.utils.tensorboard import SummaryWriter

            # purge_step makes TensorBoard drop what an interrupted run logged after the
            # checkpoint it resumes from, so the resumed run continues the same curves
            self.writer = SummaryWriter(log_dir=str(run_dir / TB_FOLDER), purge_step=purge_step)
            quiet_tensorboard_thread_errors()

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            try:
                self.writer.add_scalar(tag, value, step)
            except OSError as err:
                raise self._write_failed(err) from None

    def scalars(self, values: Mapping[str, float | None], step: int, prefix: str = "") -> None:
        for key, value in values.items():
            if value is not None:
                self.scalar(prefix + key, value, step)

    def hparams(self, params: Mapping[str, HParam]) -> None:
        """Record the run's hyper-parameters: its row of TensorBoard's HPARAMS table
        (:mod:`rcnnexp.engine.hparams`)."""
        if self.writer is not None:
            self.writer._get_file_writer().add_summary(session_start(params))

    def final_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        """results.json's final metrics, at ``step`` on their curves in the ``final``
        sub-run (HPARAMS' metric columns), and the run marked finished."""
        if self.writer is None:
            return
        from torch.utils.tensorboard import SummaryWriter

        try:
            final = SummaryWriter(log_dir=str(self.run_dir / TB_FOLDER / FINAL_RUN))
            for name, tag in FINAL_METRICS.items():
                value = metrics.get(name)
                if isinstance(value, int | float) and math.isfinite(value):
                    final.add_scalar(tag, float(value), step)
            final.close()
            self.writer._get_file_writer().add_summary(session_end())
        except OSError as err:
            raise self._write_failed(err) from None

    def metrics_csv(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Rewrite metrics.csv from the whole history: one row per epoch, epoch first."""
        if not self.enabled or not history:
            return
        columns = ["epoch", *sorted({k for row in history for k in row} - {"epoch"})]

        text = io.StringIO(newline="")
        out = csv.DictWriter(text, fieldnames=columns, restval="")
        out.writeheader()
        out.writerows(history)
        data = text.getvalue().encode()
        atomic_write(self.run_dir / "metrics.csv", lambda fh: fh.write(data), size=len(data))

    def json(self, name: str, payload: Mapping[str, Any]) -> None:
        """Write strict JSON: a NaN or infinite number is written as null."""
        if self.enabled:
            data = (json.dumps(finite_or_null(payload), indent=2, sort_keys=False,
                               allow_nan=False) + "\n").encode()
            atomic_write(self.run_dir / name, lambda fh: fh.write(data), size=len(data))

    def flush(self) -> None:
        if self.writer is not None:
            try:
                self.writer.flush()
            except OSError as err:
                raise self._write_failed(err) from None

    def close(self) -> None:
        """Close TensorBoard's files; a run that failed to write them has said so already."""
        if self.writer is not None:
            writer, self.writer = self.writer, None
            with contextlib.suppress(OSError):
                writer.close()

    def _write_failed(self, err: OSError) -> Exception:
        """A failed TensorBoard write: a full disk gets the one line that says so."""
        self.writer = None  # its writer thread has stopped: nothing more can be written
        if err.errno in NO_SPACE:
            return no_space_error(self.run_dir / TB_FOLDER, None)
        return err


def quiet_tensorboard_thread_errors() -> None:
    """Let TensorBoard's writer thread fail without printing a traceback of its own.

    The thread stops on a failed write (a full disk) and TensorBoard raises the same error
    again in the main thread at the next call, where :class:`RunLogger` turns it into one
    line; the thread's own traceback would only bury that line.
    """
    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    previous = threading.excepthook
    if getattr(previous, "quiets_tensorboard", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if not (isinstance(args.thread, _AsyncWriterThread)
                and issubclass(args.exc_type, OSError)):
            previous(args)

    hook.quiets_tensorboard = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def finite_or_null(tree: Any) -> Any:
    """``tree`` with every NaN or infinite float replaced by None (JSON's null)."""
    if isinstance(tree, float) and not math.isfinite(tree):
        return None
    if isinstance(tree, Mapping):
        return {k: finite_or_null(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [finite_or_null(v) for v in tree]
    return tree

