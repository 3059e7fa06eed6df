"""The ``rcnnexp`` command: ``train`` (a Hydra app), ``eval`` and ``info``.

This is the only layer that talks to Hydra's runtime (run directories, sweeps, the
command line); it hands a composed config and a :class:`RunContext` to the engine and turns
:class:`rcnnexp.errors.UserError` into a one-line message and a non-zero exit.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import json
import logging
import os
import shutil
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from rcnnexp import __version__
from rcnnexp.errors import Terminated, UserError, unwritable_reason
from rcnnexp.sweep import override_key

if TYPE_CHECKING:
    from rcnnexp.sweep_resume import Job

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
log = logging.getLogger("rcnnexp")

USAGE = f"""\
usage: rcnnexp COMMAND [OVERRIDES ...]

Config-driven experiments for recurrent-convolutional image classifiers (v{__version__}).

commands:
  train   train a model: rcnnexp train [group=option] [key=value] [-m for sweeps]
          (`rcnnexp train --help` lists the config groups and every key)
  eval    evaluate a checkpoint: rcnnexp eval checkpoint=PATH [split=test|val]
          [output=FILE.json] [overrides]
  info    describe a model without training: rcnnexp info [overrides]
          (a layer table, then one JSON line with params and FLOPs)
  report  runs against the papers' tables: rcnnexp report [RUN_OR_SWEEP_DIR ...] [out=DIR]
          (Markdown, CSV and PNG figures in a new folder; default outputs/reports/DATE/TIME;
          out=NAME.md: that file, its figures in NAME/)

examples:
  rcnnexp train                          # RCNN on the embedded digits, on CPU
  rcnnexp train model.K=64 trainer.epochs=5
  rcnnexp train -m model.K=32,64         # a sweep, one run directory per job
  rcnnexp train -m table=rcnn/t4 trainer.seed=0,1,2   # a paper's table, three seeds a row
  rcnnexp train -m table=rcnn/t4 --dry-run            # list those jobs, run nothing
  rcnnexp info model.K=160
  rcnnexp eval checkpoint=outputs/DATE/TIME/checkpoints/best.pt
  rcnnexp report outputs/multirun/DATE/TIME out=reports/t4
"""


EVAL_USAGE = """\
usage: rcnnexp eval checkpoint=PATH [split=test|val|train] [output=FILE.json] [OVERRIDES ...]

Evaluate a checkpoint written by `rcnnexp train`: its model is rebuilt from the config stored
in it, with OVERRIDES on top (e.g. dataset.views=grid9, trainer.device=cpu); data of another
shape than it was trained on is refused. The metrics go to output= (by default
<run dir>/eval/<checkpoint>-<split>-<time>.json) and, as one JSON line, to stdout.

example:
  rcnnexp eval checkpoint=outputs/DATE/TIME/checkpoints/best.pt split=test
"""

INFO_USAGE = """\
usage: rcnnexp info [OVERRIDES ...]

Describe the model that `rcnnexp train OVERRIDES` would train, without reading data or
training: a layer table (output shapes, parameters), then one JSON line with params, FLOPs
(per image, forward), the input shape, the classes and the model's parts.

examples:
  rcnnexp info model.K=160
  rcnnexp info experiment=recnet/t3_60_1280
"""

REPORT_USAGE = """\
usage: rcnnexp report [RUN_OR_SWEEP_DIR ...] [out=DIR | out=NAME.md]

Read the runs below the given directories (default: outputs) and write a report of them
against the papers' tables: Markdown, rows.csv, runs.csv and PNG figures, in a new folder
(default outputs/reports/DATE/TIME; out=NAME.md: that file, its figures in NAME/). A folder
whose results.json is not a run's is skipped with a warning.

example:
  rcnnexp report outputs/multirun/DATE/TIME out=reports/t4
"""

HELP_FLAGS = ("-h", "--help")


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        sys.exit(0 if args else 2)
    if args[0] == "--version":
        print(f"rcnnexp {__version__}")
        return
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        _fail(f"unknown command {command!r}; the commands are {', '.join(COMMANDS)} "
              "(rcnnexp --help)")
    if not CONF_DIR.is_dir():
        _fail(f"the config directory {CONF_DIR} is missing: install rcnnexp from its "
              "repository with `pip install -e .`")
    if command in COMMAND_USAGE and any(a in HELP_FLAGS for a in rest):
        print(COMMAND_USAGE[command], end="")
        return
    from rcnnexp.config import register_configs

    register_configs()
    with signals_end_the_command(command):
        COMMANDS[command](rest)


@contextlib.contextmanager
def signals_end_the_command(command: str) -> Iterator[None]:
    """Ctrl-C or SIGTERM while a command starts up (imports, composing, reading data) or
    ends: one line and the shell's convention, 128 + the signal (130, 143), no traceback.
    During training the engine stops at a checkpoint and prints how to continue instead."""

    def terminate(_signum: int, _frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except KeyboardInterrupt:
        _fail(f"interrupted by Ctrl-C (SIGINT): `rcnnexp {command}` stopped before it "
              "finished", 128 + signal.SIGINT)
    except Terminated:
        _fail(f"interrupted by SIGTERM: `rcnnexp {command}` stopped before it finished",
              128 + signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


# -- train --------------------------------------------------------------------------------------
MULTIRUN_FLAGS = ("-m", "--multirun")


def train_command(args: list[str]) -> None:
    import hydra

    if any(a in ("--help", "-h") for a in args):
        from rcnnexp.help import train_help

        print(train_help(CONF_DIR), end="")
        return
    check_arguments_are_overrides(args)
    check_experiment_names(args)
    check_output_dirs(args)
    multirun = any(a in MULTIRUN_FLAGS for a in args)
    if multirun and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        _fail("a sweep (-m) cannot run under torchrun: each rank would run every job in a "
              "directory of its own; start one torchrun per job instead, or a cluster "
              "launcher (hydra/launcher=...)")
    check_table_is_swept(args, multirun)
    check_cluster_is_swept(args, multirun)
    if "--dry-run" in args or (multirun and _cfg_job(args)):
        list_jobs([a for a in args if a not in (*MULTIRUN_FLAGS, "--dry-run")], multirun)
        return
    if not any(a in HYDRA_OWN_FLAGS for a in args):
        jobs = check_composes(args, multirun)
        if multirun:
            check_slurm_is_here(args)
            naming = name_job_folders(args, jobs)
            args = [*args, *naming]
            check_sweep_folder([[*job, *naming] for job in jobs])
    sys.argv = ["rcnnexp train", *args]
    app = hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")(
        train_task)
    app()


def check_sweep_folder(jobs: list[list[str]]) -> None:
    """Refuse, before anything is written, a sweep whose folder holds another sweep, or this
    one without trainer.resume=auto (:func:`rcnnexp.sweep_resume.refusal`); ``jobs``: each
    job's overrides, with the override that names the jobs' folders."""
    from rcnnexp.sweep_resume import refusal

    found = sweep_folder_jobs(jobs)
    if found is not None:
        refused = refusal(found[1], found[0])
        if refused is not None:
            _fail(refused)


def sweep_folder_jobs(jobs: list[list[str]]) -> tuple[Path, list[Job]] | None:
    """The sweep's folder and each of its jobs as that folder finds it
    (:class:`rcnnexp.sweep_resume.Job`), where the folder exists and the sweep's sweeper
    continues sweeps (not a search's); None otherwise."""
    from rcnnexp.sweep_resume import RESUMING_SWEEPER, read_job

    first = compose(jobs[0], hydra_node=True)
    sweep_dir = Path(str(first.hydra.sweep.dir)).absolute()
    if first.hydra.sweeper.get("_target_") != RESUMING_SWEEPER or not sweep_dir.is_dir():
        return None
    return sweep_dir, [read_job(first if num == 0 else compose(job, hydra_node=True), num)
                       for num, job in enumerate(jobs)]


# flags after which Hydra does not compose conf/config.yaml as `train` does (its help, its
# own info, another config): left to Hydra
HYDRA_OWN_FLAGS = ("--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc",
                   "--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd")


def command_overrides(args: Sequence[str]) -> list[str]:
    """The overrides among ``train``'s arguments (``key=value``, ``~key``), without flags."""
    return [a for a in args if (a.partition("=")[1] or a.startswith("~"))
            and not a.startswith("-")]


# flags of `train` (Hydra's) that take the next argument as their value
FLAGS_WITH_VALUE = ("--cfg", "-c", "--package", "-p", "--info", "-i", "--config-name", "-cn",
                    "--config-path", "-cp", "--config-dir", "-cd", "--experimental-rerun")


def check_arguments_are_overrides(args: Sequence[str]) -> None:
    """Refuse an argument that is neither ``key=value`` (``~key``) nor a flag, such as
    ``rcnnexp train mnist``: Hydra's parse error says only ``missing EQUAL at '<EOF>'``
    over four lines. A group's option name gets its ``group=option`` suggested."""
    previous = None
    for arg in args:
        stray = not (arg.startswith(("-", "~")) or "=" in arg or previous in FLAGS_WITH_VALUE)
        previous = arg
        if not stray:
            continue
        groups = sorted(p.parent.relative_to(CONF_DIR).as_posix()
                        for p in CONF_DIR.glob(f"*/{arg}.yaml"))
        hint = (f" (did you mean {' or '.join(f'{g}={arg}' for g in groups)}?)" if groups
                else "")
        _fail(f"{arg!r} is neither key=value nor a flag{hint}: write each setting as "
              "key=value, e.g. model.K=64 or experiment=rcnn/t4_rcnn32 (rcnnexp train --help "
              "lists the groups and keys)")


def check_composes(args: list[str], multirun: bool) -> list[list[str]]:
    """Compose every job before Hydra does, so that a bad override gets one line and exit 2
    (Hydra's own report is many lines and exit 1), and refuse keys no schema declares;
    returns the jobs' overrides (:func:`sweep_jobs`)."""
    from rcnnexp.config.explain import check_known_keys

    jobs = sweep_jobs(command_overrides(args), multirun)
    for job in jobs:
        try:
            check_known_keys(compose(job))
        except UserError as err:
            _fail(str(err), err.exit_code)
    return jobs


def name_job_folders(args: Sequence[str], jobs: list[list[str]]) -> list[str]:
    """The override that names a sweep's job folders by what tells the jobs apart
    (:func:`rcnnexp.sweep.folder_naming_override`), unless the command line names them."""
    from rcnnexp.sweep import OVERRIDE_DIRNAME_EXCLUDE, folder_naming_override

    if any(override_key(a) == OVERRIDE_DIRNAME_EXCLUDE for a in command_overrides(args)):
        return []
    return [folder_naming_override(jobs)]


def train_task(cfg: DictConfig) -> dict[str, Any]:
    """One training job (Hydra calls this once per run, or per job of a sweep)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from rcnnexp.engine.progress import log_to_files
    from rcnnexp.engine.run import RunContext, train
    from rcnnexp.engine.rundir import lock_run_dir
    from rcnnexp.sweep import failed_job
    from rcnnexp.sweep_resume import continue_command

    hc = HydraConfig.get()
    sweeping = hc.mode == RunMode.MULTIRUN
    run_dir = Path(hc.runtime.output_dir)
    ctx = RunContext(run_dir=run_dir, overrides=list(hc.overrides.task),
                     choices={k: v for k, v in hc.runtime.choices.items()
                              if not k.startswith("hydra") and v is not None},
                     # an interrupted job of a sweep is continued with the rest of the sweep
                     continue_command=(continue_command(HydraConfig.instance().cfg)
                                       if sweeping else None))
    log.info("run directory: %s", run_dir)
    if not sweeping:  # a sweep names its own directory once, at its end
        log.info("TensorBoard:   tensorboard --logdir %s", run_dir)
    lock = None
    try:
        # one process per job folder (a single run's is RunGuard's): a sweep continued while
        # its jobs still run (submitit's outlive their launcher) never trains one twice at once
        if sweeping:
            lock = lock_run_dir(run_dir)
        results = train(cfg, ctx)
    except Exception as err:
        if sweeping:  # reported, and the sweep goes on to its other jobs and its summary
            return failed_job(err, run_dir)
        if not isinstance(err, UserError):
            raise  # a bug: Hydra prints its traceback
        print(f"error: {err}", file=sys.stderr)
        log_to_files(log, f"error: {err}", logging.ERROR)
        sys.exit(err.exit_code)
    finally:
        if lock is not None:
            lock.close()
    top1 = results["test_top1"]
    log.info("done: test top-1 %s%% (best epoch %s), %.0f s; results in %s",
             "n/a" if top1 is None else f"{top1:.2f}", results["best_epoch"], results["wall_s"],
             run_dir / "results.json")
    if not sweeping:
        log.info("TensorBoard:   tensorboard --logdir %s", run_dir)
    if cfg.optimized_metric is not None:  # a search's trial: its sweeper wants one number
        return results[cfg.optimized_metric]
    return results


def _task_config(config: DictConfig) -> DictConfig:
    """The job's config without Hydra's own node, as the task function receives it."""
    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


class RunGuard(Callback):
    """Hydra callback: check a single run before Hydra writes anything.

    Before a single run, and before Hydra writes anything, it locks the run directory
    against a second process, refuses one that already holds a run unless ``trainer.resume``
    is set, and makes every check the run could fail (:func:`rcnnexp.engine.run.check_run`);
    then it keeps the earlier ``.hydra/`` beside the new one. Under torchrun every rank takes
    rank 0's run directory, rank 0 alone does all this, and the other ranks leave ``.hydra/``
    and train.log to it. A sweep's jobs are reported by :class:`rcnnexp.sweep.SweepReport`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lock: TextIO | None = None  # held while the run lives (rcnnexp.engine.rundir)

    def on_run_start(self, config: DictConfig, **_: Any) -> None:
        from rcnnexp.engine.distributed import main_decides
        from rcnnexp.engine.run import shared_run_dir

        main = is_main_rank()
        try:
            # under torchrun: one directory for all ranks, and rank 0 alone checks and
            # prepares it (the others wait for its verdict, and share a refusal's exit)
            run_dir = shared_run_dir(_task_config(config), str(config.hydra.run.dir))
            with read_write(config):
                config.hydra.run.dir = str(run_dir)
            main_decides(lambda: self.prepare(config, run_dir))
        except UserError as err:
            if main:
                _fail(str(err), err.exit_code)
            sys.exit(err.exit_code)
        except Exception:  # a bug: Hydra would turn it into a warning and run on
            traceback.print_exc()
            sys.exit(1)
        if not main:
            leave_writing_to_rank_0(config)

    def prepare(self, config: DictConfig, run_dir: Path) -> None:
        """Lock ``run_dir``, refuse what the run would fail on, create the directory, and
        move an earlier ``.hydra/`` aside."""
        from rcnnexp.engine.resume import already_holds_a_run
        from rcnnexp.engine.run import check_run
        from rcnnexp.engine.rundir import lock_run_dir
        from rcnnexp.engine.storage import check_room_to_start

        # an existing directory is locked first: another process may be training there
        self.lock = lock_run_dir(run_dir, create=False)
        if (run_dir / ".hydra").exists() and config.trainer.resume is None:
            raise already_holds_a_run(run_dir)
        check_run(_task_config(config), run_dir)
        check_room_to_start(run_dir)
        if self.lock is None:
            self.lock = lock_run_dir(run_dir)  # creates the directory
        previous = run_dir / ".hydra"
        if not previous.exists():
            return
        n = 1
        while (run_dir / f".hydra.{n}").exists():
            n += 1
        shutil.move(str(previous), run_dir / f".hydra.{n}")


def is_main_rank() -> bool:
    """Rank 0 of a torchrun job, or a process on its own (torchrun's RANK)."""
    return int(os.environ.get("RANK", 0)) == 0


def leave_writing_to_rank_0(config: DictConfig) -> None:
    """On a rank other than 0: no ``.hydra/`` and no train.log of its own (rank 0 writes
    both), and only warnings and errors on the terminal (torchrun shows every rank's)."""
    with read_write(config), open_dict(config):
        config.hydra.output_subdir = None
        logging_config = config.hydra.job_logging
        logging_config.root.handlers = [h for h in logging_config.root.handlers if h != "file"]
        logging_config.root.level = "WARNING"
        logging_config.handlers.pop("file", None)


# -- eval and info: composed with Hydra's compose API, no run directory --------------------------
def _split_args(args: list[str], keys: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Pull ``key=value`` command arguments (not config keys) out of the overrides."""
    own: dict[str, str] = {}
    rest: list[str] = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key in keys:
            own[key] = value
        else:
            rest.append(arg)
    return own, rest


def check_experiment_names(overrides: Sequence[str]) -> None:
    """Refuse an unknown ``experiment=NAME`` naming every preset.

    The presets live in sub-folders (``recnet/t2b_e8``), and Hydra's own message lists only
    the top level of the group, which would hide all of them.
    """
    root = CONF_DIR / "experiment"
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and key in ("+experiment", "++experiment"):
            _fail(f"{override}: write experiment={value}, without {key[:-len('experiment')]} "
                  "(experiment is a group conf/config.yaml already lists, as null)")
        if not sep or key.lstrip("+~") != "experiment" or "(" in value:
            continue  # sweep functions such as glob(...) are left to Hydra
        known = {str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml")}
        unknown = [v for v in (v.strip() for v in value.split(","))
                   if v and v != "null" and v not in known]
        if unknown:
            by_folder: dict[str, list[str]] = {}
            for name in sorted(known):
                folder, _, stem = name.rpartition("/")
                by_folder.setdefault(folder, []).append(stem)
            listing = "\n".join(f"  {folder + '/' if folder else '(top level)'}: "
                                 f"{', '.join(stems)}" for folder, stems in by_folder.items())
            from rcnnexp.config.explain import did_you_mean

            hint = did_you_mean(unknown[0], sorted(known))
            _fail(f"experiment={unknown[0]} is not a preset in {root}{hint}; the presets are "
                  f"(docs/experiments.md says which paper row each one is):\n{listing}")


OUTPUT_DIR_KEYS = ("hydra.run.dir", "hydra.sweep.dir")


def check_output_dirs(overrides: Sequence[str]) -> None:
    """Refuse an empty ``hydra.run.dir=`` or ``hydra.sweep.dir=``: Hydra takes it for the
    current folder, and a run would write its checkpoints, logs and ``.hydra/`` among
    whatever is there (the source tree, when run from the repository)."""
    for override in command_overrides(overrides):
        key, _, value = override.partition("=")
        if key.lstrip("+~") in OUTPUT_DIR_KEYS and not value.strip().strip("'\"").strip():
            _fail(f"{key.lstrip('+~')}= is empty, which would write the run into the current "
                  f"folder ({Path.cwd()}): give a folder, e.g. {key.lstrip('+~')}=outputs/NAME, "
                  "or leave it out for outputs/DATE/TIME")


def check_table_is_swept(overrides: Sequence[str], multirun: bool) -> None:
    """``table=NAME`` only sets a sweep's jobs: without ``-m`` it would train the default."""
    table = next((o for o in overrides if override_key(o) == "table"
                  and o.partition("=")[2] not in ("", "null")), None)
    if table is not None and not multirun:
        _fail(f"{table} runs every row of a table as a sweep: add -m (rcnnexp train -m "
              f"{table} [trainer.seed=0,1,2]); for one row use experiment=<paper>/<row>")


def check_cluster_is_swept(overrides: Sequence[str], multirun: bool) -> None:
    """``cluster=NAME`` chooses where a sweep's jobs run (Hydra's launcher, which only
    launches sweeps): without ``-m`` the run would train here."""
    cluster = next((o for o in overrides if override_key(o) == "cluster"
                    and o.partition("=")[2] not in ("", "null")), None)
    if cluster is not None and not multirun:
        _fail(f"{cluster} submits a sweep's jobs to the cluster: add -m (rcnnexp train -m "
              f"{cluster} ...; one job is a sweep of one)")


SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def check_slurm_is_here(args: list[str]) -> None:
    """A sweep for SLURM is submitted with ``sbatch`` (and submitit insists on ``srun``):
    where they are missing, say so in one line before anything is written, instead of
    submitit's traceback from inside Hydra."""
    first_job = sweep_jobs(command_overrides(args), multirun=True)[0]
    hydra_node = compose(first_job, hydra_node=True).hydra
    missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
    if hydra_node.launcher.get("_target_") == SLURM_LAUNCHER and missing:
        _fail(f"hydra/launcher={hydra_node.runtime.choices['hydra/launcher']} submits the "
              f"jobs to SLURM, and "
              f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not on PATH "
              "here: run it on the cluster's login node (docs/cluster.md), or run the jobs "
              "on this machine with hydra/launcher=submitit_local")


def compose(overrides: list[str], hydra_node: bool = False) -> DictConfig:
    """Compose ``conf/config.yaml`` with overrides, as `train` would, minus Hydra's runtime
    (``hydra_node``: keep Hydra's own node, e.g. for the sweeper's params)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from rcnnexp.config import explain
    from rcnnexp.config.explain import another_family

    check_experiment_names(overrides)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            return hydra_compose(config_name="config", overrides=overrides,
                                 return_hydra_config=hydra_node)
    except (HydraException, OmegaConfBaseException) as err:
        _fail(another_family(err, overrides) or explain(err))
        raise  # unreachable: _fail exits


def _cfg_job(args: Sequence[str]) -> bool:
    return any(a in ("--cfg", "-c") for a in args)


def sweep_jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """Each job's overrides, in order, exactly as ``-m`` would launch them: the sweeper's
    ``params`` from the config (a table's rows), then the command line's (which win on the
    same key), as a cartesian product by Hydra's own basic sweeper."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from rcnnexp.sweep_resume import RESUMING_SWEEPER

    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
        if not multirun:
            return [overrides]
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        sweeper = compose(fixed, hydra_node=True).hydra.sweeper
        params = sweeper.params or {}
        everything = parser.parse_overrides([*(f"{k}={v}" for k, v in params.items()),
                                             *overrides])
        if sweeper._target_ not in (RESUMING_SWEEPER,
                                    f"{BasicSweeper.__module__}.{BasicSweeper.__name__}"):
            return search_space_ends(everything)
        [jobs] = BasicSweeper.split_arguments(everything, None)
    except HydraException as err:
        from rcnnexp.config import explain

        _fail(explain(err))
    return jobs


def search_space_ends(overrides: Sequence[Any]) -> list[list[str]]:
    """A search's (conf/search) trials are drawn as it runs, so what can be checked before is
    its space: two jobs, one with every swept key at its first choice or an interval's lower
    end, one at its last choice or upper end (parsed overrides in, override strings out)."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep

    ends: list[list[str]] = [[], []]
    for override in overrides:
        value = override.value() if override.is_sweep_override() else None
        if isinstance(value, ChoiceSweep):
            picks = [value.list[0], value.list[-1]]
        elif isinstance(value, IntervalSweep):
            picks = [value.start, value.end]
        else:
            for job in ends:
                job.append(override.input_line)
            continue
        for job, pick in zip(ends, picks, strict=True):
            job.append(f"{override.get_key_element()}={pick}")
    return ends


def list_jobs(args: list[str], multirun: bool) -> None:
    """``--dry-run``: one line per job (its overrides; its config's validity, its dataset's
    files missing on disk, and what its sweep folder holds of it), or with ``--cfg job``
    each job's composed config; nothing runs, nothing is downloaded or written, and what a
    real run would refuse ends it with exit 2."""
    from omegaconf import OmegaConf

    from rcnnexp.config import validate
    from rcnnexp.engine.run import missing_data
    from rcnnexp.sweep_resume import refusal, status_note

    show_config = _cfg_job(args)
    overrides = command_overrides(args)
    jobs = sweep_jobs(overrides, multirun)
    # where the jobs' folders are, named as the sweep would name them (name_job_folders)
    naming = name_job_folders(args, jobs) if multirun else []
    found = sweep_folder_jobs([[*job, *naming] for job in jobs]) if multirun else None
    invalid = lacking = 0
    for num, job in enumerate(jobs):
        cfg = compose(job)
        notes = []
        try:
            validate(cfg)
            lacks = missing_data(cfg)
        except UserError as err:
            invalid += 1
            notes.append(f"invalid: {err}")
        else:
            if lacks is not None:
                lacking += 1
                notes.append(f"lacks data: {lacks}")
        if found is not None and (note := status_note(found[1][num])):
            notes.append(note)
        print(f"#{num} {' '.join(job)}" + "".join(f"  -> {n}" for n in notes))
        if show_config:
            print(OmegaConf.to_yaml(cfg))
    counts = [f"{invalid} invalid" if invalid else "",
              f"{lacking} lacking data" if lacking else ""]
    print(f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}"
          + "".join(f", {c}" for c in counts if c) + " (dry run: nothing was run)")
    refused = None if found is None else refusal(found[1], found[0])
    if refused is not None:
        print(f"error: {refused}", file=sys.stderr)
    if invalid or refused is not None:
        sys.exit(2)


def eval_command(args: list[str]) -> None:
    from rcnnexp.engine.checkpoint import load_checkpoint
    from rcnnexp.engine.run import evaluate_checkpoint

    _plain_logging()
    check_arguments_are_overrides(args)
    own, overrides = _split_args(args, ("checkpoint", "split", "output"))
    if "checkpoint" not in own:
        _fail("eval needs checkpoint=PATH (e.g. outputs/DATE/TIME/checkpoints/best.pt)")
    split = own.get("split", "test")
    if split not in ("test", "val", "train"):
        _fail(f"split={split}: choose test, val or train")
    checkpoint = Path(own["checkpoint"])
    try:
        stored = load_checkpoint(checkpoint).get("overrides", [])
        # the checkpoint's own overrides rebuild its model and data; the user's win
        user_keys = {override_key(o) for o in overrides}
        kept = [o for o in stored if override_key(o) not in user_keys
                and not override_key(o).startswith(("hydra.", "trainer.resume"))]
        cfg = compose([*kept, *overrides])
        with open_dict(cfg):
            cfg.trainer.resume = None
        output = Path(own["output"]) if "output" in own else _default_eval_path(checkpoint, split)
        # under torchrun every rank scores its share of the images; rank 0 writes the result
        main = is_main_rank()
        with reserve_output(output) if main else contextlib.nullcontext() as handle:
            result = evaluate_checkpoint(cfg, checkpoint, split)
            if handle is not None:
                handle.write(json.dumps({**result, "overrides": [*kept, *overrides]},
                                        indent=2) + "\n")
    except UserError as err:
        _fail(str(err), err.exit_code)
    if not main:
        return
    print(f"{result['arch']} on {split}: top-1 {result['top1']:.2f}%  top-5 "
          f"{result['top5']:.2f}%  ({result['examples']} images) -> {output}")
    print(json.dumps(result))


@contextlib.contextmanager
def reserve_output(output: Path) -> Iterator[TextIO]:
    """Create ``output`` (never over an existing file) before the work that fills it, so an
    unwritable place is refused before an evaluation's minutes are spent; the empty file
    is removed again when that work fails."""
    if output.exists():
        raise UserError(f"output={output} already exists; choose another file")
    # the folders made for it, deepest first: removed again with it (a refused eval leaves
    # no empty <run dir>/eval/)
    made = [p for p in (output.parent, *output.parent.parents) if not p.exists()]
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        handle = open(output, "x")  # noqa: SIM115 (closed below, removed on failure)
    except OSError as err:
        raise UserError(f"output={output}: cannot write there "
                        f"({unwritable_reason(output, err)}); choose a file in a folder you "
                        "can write to") from None
    try:
        with handle:
            yield handle
    except BaseException:
        output.unlink(missing_ok=True)
        for folder in made:
            with contextlib.suppress(OSError):  # not empty: something else wrote there
                folder.rmdir()
        raise


def _default_eval_path(checkpoint: Path, split: str) -> Path:
    """<run dir>/eval/<checkpoint>-<split>-<time>.json for a run's checkpoint."""
    in_run = checkpoint.parent.name == "checkpoints"
    base = checkpoint.parent.parent if in_run else checkpoint.parent
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = base / "eval" / f"{checkpoint.stem}-{split}-{stamp}.json"
    n = 1
    while path.exists():
        path = path.with_name(f"{checkpoint.stem}-{split}-{stamp}-{n}.json")
        n += 1
    return path


def info_command(args: list[str]) -> None:
    from rcnnexp.engine.run import describe

    _plain_logging()
    check_arguments_are_overrides(args)
    cfg = compose(args)
    try:
        rows, summary = describe(cfg)
    except UserError as err:
        _fail(str(err), err.exit_code)
    width = max([len(r[0]) for r in rows] + [5])
    print(f"{'layer':<{width}}  {'type':<18} {'output':<18} {'params':>12}")
    for name, kind, shape, params in rows:
        print(f"{name:<{width}}  {kind:<18} {shape:<18} {params:>12,}")
    print(f"{summary['arch']}: {summary['params']:,} parameters, {summary['flops']:,} FLOPs "
          f"per {'x'.join(map(str, summary['input']))} image (forward)")
    print(json.dumps(summary))


def report_command(args: list[str]) -> None:
    from rcnnexp.report import default_out, write_report

    own, rest = _split_args(args, ("out",))
    odd = [a for a in rest if a.startswith("-") or "=" in a]
    if odd:
        _fail(f"report takes directories and out=DIR, not {odd[0]!r} (rcnnexp report "
              "[RUN_OR_SWEEP_DIR ...] [out=DIR])")
    paths = [Path(a) for a in rest] or [Path("outputs")]
    out = Path(own["out"]) if own.get("out") else default_out()
    try:
        markdown = write_report(paths, out, CONF_DIR, " ".join(["rcnnexp report", *args]),
                                warn=_warn)
    except UserError as err:
        _fail(str(err), err.exit_code)
    folder = out.with_suffix("") if out.suffix == ".md" else out
    figures = len(list(folder.glob("*.png")))
    print(f"report: {markdown} (with rows.csv, runs.csv and {figures} figures in {folder})")


def _plain_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)


COMMAND_USAGE = {"eval": EVAL_USAGE, "info": INFO_USAGE, "report": REPORT_USAGE}

COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "train": train_command,
    "eval": eval_command,
    "info": info_command,
    "report": report_command,
}
