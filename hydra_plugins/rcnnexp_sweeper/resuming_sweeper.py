# Hydra's plugin scanner runs this module before it is in sys.modules, where a dataclass
# with postponed annotations (from __future__ import annotations) cannot be made: none here.
"""The sweeper of every rcnnexp sweep that is not a search: Hydra's basic sweeper (the same
jobs, in the same order, with the same numbers and batches), which in a folder that already
holds the sweep skips the jobs that finished and lets the interrupted ones resume.

It takes the place of Hydra's ``basic`` option of ``hydra/sweeper`` (registered under that
name after Hydra's own, which the plugin scanner loads first), so that a search's
``override /hydra/sweeper: optuna`` (conf/search) still chooses Optuna's: an override in
conf/config.yaml would win over the search's.
"""

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf


@dataclass
class ResumingSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.rcnnexp_sweeper.resuming_sweeper.ResumingSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="basic", node=ResumingSweeperConf,
                             provider="rcnnexp")


class ResumingSweeper(BasicSweeper):
    """:class:`BasicSweeper` with its ``sweep`` continuing a sweep in its folder."""

    def sweep(self, arguments: list[str]) -> Any:
        """Launch every job of the sweep that did not finish in its folder, keeping each
        job's number; refuse (one line, exit 2) a folder of another sweep, or of this one
        without ``trainer.resume=auto``. Returns the launches' job returns, as Hydra's."""
        from rcnnexp.errors import Terminated
        from rcnnexp.sweep import write_record
        from rcnnexp.sweep_resume import (
            Action,
            launches,
            plan_lines,
            read_job,
            refusal,
            skipped_record,
            stop_interrupted,
        )

        assert self.config is not None and self.launcher is not None
        assert self.hydra_context is not None
        loader = self.hydra_context.config_loader
        parser = OverridesParser.create(config_loader=loader)
        parsed = parser.parse_overrides([*self._parse_config(), *arguments])
        overrides: list[Sequence[str]] = [job for batch in
                                          self.split_arguments(parsed, None) for job in batch]
        # composing each job also checks it composes, as the basic sweeper does first
        configs = [loader.load_sweep_config(self.config, list(job)) for job in overrides]
        jobs = [read_job(config, num) for num, config in enumerate(configs)]
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        refused = refusal(jobs, sweep_dir)
        if refused is not None:
            print(f"error: {refused}", file=sys.stderr)
            sys.exit(2)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        for line in plan_lines(jobs, sweep_dir):
            print(line)
        for job, config in zip(jobs, configs, strict=True):
            if job.action == Action.SKIP:  # the sweep's summary covers it too
                write_record(sweep_dir, skipped_record(job, config))
        returns = []
        try:
            for start, run in launches(jobs, overrides, self.max_batch_size):
                results = self.launcher.launch(run, initial_job_idx=start)
                for result in results:
                    _ = result.return_value  # raises a job's exception, as the basic sweeper
                returns.append(results)
        except (KeyboardInterrupt, Terminated) as err:
            stop_interrupted(err, self.config)
        return returns
