"""Progress display: tqdm bars on a terminal, plain log lines elsewhere (files, CI, clusters)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


class Progress:
    """One bar for epochs, one for the batches of the current epoch.

    With ``bars=False`` (``trainer.progress=false``, output not a terminal, or not the main
    process) it writes a plain line per epoch and a few per long epoch instead.
    """

    def __init__(self, log: logging.Logger, enabled: bool, epochs: int, start_epoch: int,
                 bars: bool | None = None) -> None:
        self.log = log
        self.enabled = enabled
        self.bars = enabled and (sys.stderr.isatty() if bars is None else bars)
        self.epoch_bar = (tqdm(total=epochs, initial=start_epoch, desc="epochs", unit="ep",
                               dynamic_ncols=True, leave=True) if self.bars else None)
        self.batch_bar: tqdm[Any] | None = None

    def batches(self, it: Iterable[T], total: int, epoch: int) -> Iterator[T]:
        if self.bars:
            self.batch_bar = tqdm(it, total=total, desc=f"epoch {epoch + 1}", unit="batch",
                                  leave=False, dynamic_ncols=True)
            yield from self.batch_bar
            self.batch_bar.close()
            self.batch_bar = None
            return
        every = max(1, total // 10) if total >= 100 else 0
        for i, item in enumerate(it):
            yield item
            if self.enabled and every and (i + 1) % every == 0 and i + 1 < total:
                self.log.info("  epoch %d: %d/%d batches", epoch + 1, i + 1, total)

    def postfix(self, **values: float) -> None:
        if self.batch_bar is not None:
            self.batch_bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)

    def epoch_done(self, line: str) -> None:
        if self.epoch_bar is not None:
            self.epoch_bar.update(1)
        self.info(line)

    def info(self, line: str) -> None:
        """A line for the user: above the bars on a terminal, in the log file always."""
        if not self.enabled:
            return
        if self.epoch_bar is None:
            self.log.info(line)
            return
        tqdm.write(line, file=sys.stderr)
        log_to_files(self.log, line)

    def close(self) -> None:
        if self.batch_bar is not None:
            self.batch_bar.close()
        if self.epoch_bar is not None:
            self.epoch_bar.close()


def log_to_files(log: logging.Logger, line: str, level: int = logging.INFO) -> None:
    """Log to the run's file handlers only (the terminal already shows the line)."""
    record = log.makeRecord(log.name, level, __file__, 0, line, None, None)
    for logger in (log, logging.getLogger()):
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)
