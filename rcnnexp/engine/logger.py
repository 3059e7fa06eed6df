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

# the final metrics shown beside the hyper-parameters in TensorBoard's HPARAMS tab
HPARAM_METRICS = ("test_top1", "test_top5", "best_val_top1", "train_top1", "images_per_s")


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

    def hparams(self, params: Mapping[str, Any]) -> None:
        """Declare the run's hyper-parameters and which metrics HPARAMS shows beside them."""
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams

        clean = {k: _hparam_value(v) for k, v in params.items()}
        exp, ssi, sei = hparams(clean, {f"hparams/{m}": 0.0 for m in HPARAM_METRICS})
        fw = self.writer._get_file_writer()
        for summary in (exp, ssi, sei):
            fw.add_summary(summary)

    def final_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        for name in HPARAM_METRICS:
            value = metrics.get(name)
            if isinstance(value, int | float) and math.isfinite(value):
                self.scalar(f"hparams/{name}", float(value), step)

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


def _hparam_value(value: Any) -> bool | int | float | str:
    if isinstance(value, bool | int | float | str):
        return value
    return "null" if value is None else str(value)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'model': {'K': 96}} -> {'model.K': 96}; lists become their string."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
