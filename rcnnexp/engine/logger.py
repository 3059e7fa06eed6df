"""What a run writes besides checkpoints: TensorBoard events, metrics.csv, results.json.

Only the main process writes (``enabled`` is ``Runtime.is_main``); elsewhere every method
is a no-op, so the training loop never asks which rank it is on.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rcnnexp.engine.checkpoint import atomic_write
from rcnnexp.engine.hparams import FINAL_METRICS, FINAL_RUN, HParam, session_end, session_start


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
            self.writer = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=purge_step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

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

        final = SummaryWriter(log_dir=str(self.run_dir / "tb" / FINAL_RUN))
        for name, tag in FINAL_METRICS.items():
            value = metrics.get(name)
            if isinstance(value, int | float) and math.isfinite(value):
                final.add_scalar(tag, float(value), step)
        final.close()
        self.writer._get_file_writer().add_summary(session_end())

    def metrics_csv(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Rewrite metrics.csv from the whole history: one row per epoch, epoch first."""
        if not self.enabled or not history:
            return
        columns = ["epoch", *sorted({k for row in history for k in row} - {"epoch"})]

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as fh:
                out = csv.DictWriter(fh, fieldnames=columns, restval="")
                out.writeheader()
                out.writerows(history)

        atomic_write(self.run_dir / "metrics.csv", write)

    def json(self, name: str, payload: Mapping[str, Any]) -> None:
        if self.enabled:
            text = json.dumps(payload, indent=2, sort_keys=False) + "\n"
            atomic_write(self.run_dir / name, lambda tmp: Path(tmp).write_text(text))

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
