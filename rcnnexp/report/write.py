"""``rcnnexp report``: runs in; a Markdown report, two CSVs and PNG figures out.

``out=DIR`` writes ``DIR/README.md`` beside its files; ``out=NAME.md`` writes that file and
its files into the folder ``NAME/`` beside it (``out=docs/results.md``: ``docs/results/``).

The Markdown is what a paper's results section needs: per table, each row's number beside
ours (mean ± std over runs, n, the test set's size, our 95 % interval, difference, verdict;
† where a run departs from the row's protocol, with why) and a figure; RecNets'
size-accuracy plot; training curves; for every sweep, its swept keys against the final
metrics.
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rcnnexp.engine.hparams import best_val_top1
from rcnnexp.errors import UserError, unwritable_reason
from rcnnexp.report import plots
from rcnnexp.report.aggregate import (
    RowResult,
    Sweep,
    find_sweeps,
    match_rows,
    unmatched_paper_runs,
)
from rcnnexp.report.catalogue import PaperTable, load_tables
from rcnnexp.report.interval import Z95
from rcnnexp.report.labels import run_labels
from rcnnexp.report.protocol import departures
from rcnnexp.report.runs import Run, find_runs
from rcnnexp.report.search import Search, find_searches

SIZE_TABLES = ("recnet/t3", "recnet/t4")  # RecNets' size-accuracy comparison


def default_out() -> Path:
    now = _dt.datetime.now()
    return Path("outputs") / "reports" / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S")


@dataclass(frozen=True)
class Destination:
    """Where the Markdown goes and the folder of its CSVs and figures."""

    markdown: Path
    folder: Path

    @classmethod
    def of(cls, out: Path) -> Destination:
        if out.suffix == ".md":
            return cls(out, out.with_suffix(""))
        return cls(out / "README.md", out)

    def link(self, path: Path) -> str:
        """``path`` as the Markdown file links it."""
        return Path(os.path.relpath(path, self.markdown.parent)).as_posix()

    def check_free(self, out: Path) -> None:
        taken = self.markdown.exists() or (self.folder.exists() and (
            not self.folder.is_dir() or any(self.folder.iterdir())))
        if taken:
            raise UserError(f"out={out} already holds a report or files; choose a new one "
                            "(nothing there is overwritten)")


def write_report(paths: Sequence[Path], out: Path, conf_dir: Path, command: str,
                 warn: Callable[[str], None] | None = None) -> Path:
    """Gather the runs under ``paths`` and write the report to ``out`` (refused where a
    report or other files already are); returns the Markdown file. ``warn`` is told of each
    folder skipped for a results.json that is not a run's."""
    runs = find_runs(list(paths), warn)
    if not runs:
        raise UserError(f"no finished run (results.json) under {', '.join(map(str, paths))}; "
                        "give run or sweep directories written by `rcnnexp train`")
    dest = Destination.of(out)
    dest.check_free(out)
    try:
        dest.folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"out={out}: cannot write a report there "
                        f"({unwritable_reason(dest.folder, err)}); choose a folder you can "
                        "write to") from None
    tables = load_tables(conf_dir)
    rows = match_rows(tables, runs)
    sweeps = find_sweeps(runs)
    searches = find_searches(sweeps)
    plain_sweeps = [s for s in sweeps if all(s is not search.sweep for search in searches)]
    notes = departures((run for r in rows for run in r.runs), conf_dir)
    lines = _header(command, runs, paths)
    lines += _tables_section(tables, rows, notes, dest)
    lines += _size_section(rows, dest)
    lines += _unmatched_section(unmatched_paper_runs(rows, runs))
    lines += _curves_section(tables, rows, runs, sweeps, dest)
    lines += _sweeps_section(plain_sweeps, dest)
    lines += _searches_section(searches, dest)
    lines += _runs_section(runs)
    _write_rows_csv(rows, notes, dest.folder / "rows.csv")
    _write_runs_csv(runs, dest.folder / "runs.csv")
    dest.markdown.write_text("\n".join(lines) + "\n")
    return dest.markdown


# -- formatting ---------------------------------------------------------------------------------
def _num(value: float | None, sign: bool = False, digits: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _ours(r: RowResult) -> str:
    if r.mean is None:
        return "—"
    return _num(r.mean) if r.std is None else f"{_num(r.mean)} ± {_num(r.std)}"


def _short(value: str) -> str:
    """A sampled value as a reader takes it in: 4 significant digits (0.003515, not
    0.003515207314851794); anything that is not a float as it is."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if "." not in value and "e" not in value else f"{number:.4g}"


def _interval(r: RowResult) -> str:
    """``[low, high]``, our mean's 95 % interval in the row's digits; n/a without a
    test-set size."""
    ci = r.interval
    if ci is None:
        return "—" if r.mean is None else "n/a"
    digits = max(r.row.decimals, 2)
    return f"[{ci.low:.{digits}f}, {ci.high:.{digits}f}]"


def _path(p: Path) -> str:
    try:
        return os.path.relpath(p)
    except ValueError:
        return str(p)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def _wall(run: Run) -> float | None:
    """Wall time of the whole run (both stages of a two-stage run)."""
    tune = run.results.get("tune") or {}
    return (run.metric("wall_s") or 0.0) + float(tune.get("wall_s") or 0.0) or None


# -- sections -----------------------------------------------------------------------------------
def _header(command: str, runs: list[Run], paths: Sequence[Path]) -> list[str]:
    with_paper = sum(1 for r in runs if r.paper and r.counts_for_its_row)
    trials = sum(1 for r in runs if r.search_trial)
    return [
        "# Reproduction report", "",
        f"Written by `{command}` on {_dt.date.today().isoformat()} from {len(runs)} run"
        f"{'s' if len(runs) != 1 else ''} ({with_paper} of a paper's table row"
        f"{f'; {trials} trials of a search, never counted in a row' if trials else ''}) under "
        f"{', '.join(f'`{_path(p)}`' for p in paths)}.", "",
        "Ours is the mean ± sample standard deviation over the n runs of a row (seeds, "
        "SUN397's partitions), scored on a test set of the size given. Its 95 % interval "
        f"is mean ± {Z95}·SE, SE = sqrt(SE_test² + s²/n) in points: SE_test = "
        "100·sqrt(p(1-p)/N), the binomial sampling error of a test set of N images at our "
        "mean (p as a fraction), the same test set for every seed and so not shrinking "
        "with n; s/sqrt(n), the seeds' standard error. The verdict is \"reproduced\" when "
        "the paper's number lies inside that interval; otherwise it says whether ours "
        "(not the paper's) lies above or below the paper's number, by how many SE, and "
        "whether that is worse or better in the metric's direction. Numbers are "
        "percentages in the paper's metric. † marks a row with a run that departs from "
        "its protocol: changed on the command line, trained in another precision than the "
        "papers' fp32 (bf16, TF32), or configured otherwise than its preset composes "
        "today; the runs under each table say how.", ""]


def _tables_section(tables: list[PaperTable], rows: list[RowResult],
                    notes: dict[Path, list[str]], dest: Destination) -> list[str]:
    lines = ["## The papers' tables", ""]
    idle = []
    for table in tables:
        mine = [r for r in rows if r.table is table]
        if not any(r.runs for r in mine):
            idle.append(f"{table.label} (`table={table.name}`, {len(table.rows)} rows)")
            continue
        lines += [f"### {table.label}", "", table.title, "",
                  "| Row | Dataset | Metric | Paper | Ours | n | Test images | 95 % interval | "
                  "Ours − paper | Verdict |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
        departs = [_departs(r, notes) for r in mine]
        for r, marked in zip(mine, departs, strict=True):
            changed = plots.DAGGER if marked else ""
            size = r.test_images
            lines.append(f"| {r.row.row} | {r.number.dataset} | {r.number.metric} | "
                         f"{r.number.value:.{r.row.decimals}f} | {_ours(r)}{changed} | {r.n} | "
                         f"{'—' if not r.n else 'n/a' if size is None else f'{size:,}'} | "
                         f"{_interval(r)} | {_num(r.difference, sign=True)} | {r.verdict} |")
        figure = plots.save(plots.table_figure(mine, table.label, departs),
                            dest.folder / f"table-{_slug(table.name)}.png")
        lines += ["", f"![{table.label}]({dest.link(figure)})", "",
                  *_table_runs(mine, notes), ""]
    if idle:
        lines += [f"Not run yet: {'; '.join(idle)}.", ""]
    return lines


def _departs(r: RowResult, notes: dict[Path, list[str]]) -> bool:
    """Whether a row gets the †: any of its runs departs from the row's protocol."""
    return any(notes.get(run.directory) for run in r.runs)


def _table_runs(rows: list[RowResult], notes: dict[Path, list[str]]) -> list[str]:
    """The runs behind a table, each with why it departs from its row's protocol: a row
    marked † was not run as its preset stands today in the papers' fp32 (a shortened run, a
    bf16 run, a preset changed since), and this says how."""
    runs = {run.directory for r in rows for run in r.runs}
    lines = ["Runs:" if not any(notes.get(d) for d in runs) else
             "Runs († departs from its row's protocol, as listed):"]
    for directory in sorted(runs, key=_path):
        why = notes.get(directory, [])
        lines.append(f"- `{_path(directory)}`" + (f": {'; '.join(why)}" if why else ""))
    return lines


def _size_section(rows: list[RowResult], dest: Destination) -> list[str]:
    mine = [r for r in rows if r.table.name in SIZE_TABLES]
    if not any(r.runs for r in mine):
        return []
    figure = plots.save(plots.size_figure(mine), dest.folder / "recnet-size.png")
    return ["## RecNets: size against error", "",
            "Tables 3-4 as the paper's size-accuracy comparison: the paper's rows at the "
            "parameter counts it prints, ours at our models' counts.", "",
            f"![RecNets size against error]({dest.link(figure)})", ""]


def _unmatched_section(runs: list[Run]) -> list[str]:
    if not runs:
        return []
    lines = ["## Runs of paper rows that no table above compares", "",
             "| Run | Paper | Table | Row | Dataset | Reported on |", "|---|---|---|---|---|---|"]
    for run in runs:
        p = run.paper or {}
        lines.append(f"| `{_path(run.directory)}` | {p.get('paper')} | {p.get('table')} | "
                     f"{p.get('row')} | {run.results.get('dataset')} | "
                     f"{', '.join(p.get('reported_on', []))} |")
    return [*lines, ""]


def _curves_section(tables: list[PaperTable], rows: list[RowResult], runs: list[Run],
                    sweeps: list[Sweep], dest: Destination) -> list[str]:
    groups: list[tuple[str, list[Run]]] = []
    placed: set[int] = set()
    for table in tables:
        members = []
        for r in rows:
            if r.table is table:
                members += [run for run in r.runs if id(run) not in {id(m) for m in members}]
        if members:
            groups.append((table.label, members))
            placed |= {id(m) for m in members}
    for sweep in sweeps:
        members = [r for r in sweep.runs if id(r) not in placed]
        if members:
            groups.append((f"sweep {sweep.directory.parent.name}/{sweep.directory.name}",
                           members))
            placed |= {id(m) for m in members}
    rest = [r for r in runs if id(r) not in placed]
    if rest:
        groups.append(("other runs", rest))
    lines = ["## Training curves", "",
             "Per epoch: validation error (test error, dashed, for runs without a validation "
             "split), training loss and learning rate, each in its own panel, from the run's "
             "metrics.csv (for a two-stage run, its tuning stage's); dotted vertical lines "
             "mark where a run's learning rate was cut. Each run is labelled by the values "
             "that tell it apart from the others in its figure (a sweep's swept keys, the "
             "seed).", ""]
    for title, members in groups:
        figure = plots.save(plots.curves_figure(members, run_labels(members), title),
                            dest.folder / f"curves-{_slug(title)}.png")
        lines += [f"### {title}", "", f"![curves: {title}]({dest.link(figure)})", ""]
    return lines


def _sweeps_section(sweeps: list[Sweep], dest: Destination) -> list[str]:
    if not sweeps:
        return []
    lines = ["## Sweeps", ""]
    for n, sweep in enumerate(sweeps):
        keys = sweep.keys
        lines += [f"### `{_path(sweep.directory)}`", "",
                  f"{len(sweep.runs)} jobs; swept: {', '.join(f'`{k}`' for k in keys) or '—'}.",
                  "", "| Job | " + " | ".join(keys) + (" | " if keys else "")
                  + "Test top-1 | Test error | Best val top-1 | Epochs | Params |",
                  "|---|" + "---|" * len(keys) + "---:|---:|---:|---:|---:|"]
        for run in sweep.runs:
            values = " | ".join(sweep.value(run, k) for k in keys)
            lines.append(f"| {run.directory.name} | {values}{' | ' if keys else ''}"
                         f"{_num(run.metric('test_top1'))} | {_num(run.metric('test_error'))} "
                         f"| {_num(best_val_top1(run.results))} | "
                         f"{run.results.get('epochs', '—')} | "
                         f"{run.results.get('params', 0):,} |")
        lines += ["", *_sweep_spread(sweep), ""]
        for key in sweep.setting_keys:
            figure = plots.save(plots.sweep_figure(sweep, key, "test_top1"),
                                dest.folder / f"sweep-{n}-{_slug(key)}.png")
            lines += [f"![test top-1 against {key}]({dest.link(figure)})", ""]
    return lines


def _searches_section(searches: list[Search], dest: Destination) -> list[str]:
    """Each search: its best trial, every trial's values against the maximised metric (best
    first), the metric by trial, and the metric against each numeric key searched."""
    if not searches:
        return []
    lines = ["## Searches", ""]
    for n, search in enumerate(searches):
        sweep, keys, best = search.sweep, search.sweep.keys, search.best
        done = "ended" if search.ended else "not ended (no " \
            "optimization_results.yaml: running, or stopped)"
        lines += [f"### `{_path(sweep.directory)}`", "",
                  f"{len(sweep.runs)} trials, {done}; maximised: `{search.metric}`; searched: "
                  f"{', '.join(f'`{k}`' for k in keys) or '—'}.", ""]
        if best is not None:
            values = ", ".join(f"`{k}={_short(sweep.value(best, k))}`" for k in keys)
            lines += [f"Best: trial {best.directory.name}, {search.metric} "
                      f"{_num(best.metric(search.metric))}: {values}.", ""]
        lines += ["| Rank | Trial | " + " | ".join(keys) + (" | " if keys else "")
                  + f"{search.metric} | Train top-1 | Epochs | Train images | Wall (s) |",
                  "|---:|---:|" + "---|" * len(keys) + "---:|---:|---:|---:|---:|"]
        for rank, run in enumerate(search.ranked(), 1):
            values = " | ".join(_short(sweep.value(run, k)) for k in keys)
            lines.append(f"| {rank} | {run.directory.name} | {values}{' | ' if keys else ''}"
                         f"{_num(run.metric(search.metric))} | {_num(run.metric('train_top1'))}"
                         f" | {run.results.get('epochs', '—')} | "
                         f"{run.results.get('train_images', '—')} | {_num(_wall(run), digits=0)} |")
        figure = plots.save(plots.search_figure(search), dest.folder / f"search-{n}.png")
        lines += ["", f"![{search.metric} by trial]({dest.link(figure)})", ""]
        for key in sweep.setting_keys:
            figure = plots.save(plots.sweep_figure(sweep, key, search.metric),
                                dest.folder / f"search-{n}-{_slug(key)}.png")
            lines += [f"![{search.metric} against {key}]({dest.link(figure)})", ""]
    return lines


def _sweep_spread(sweep: Sweep) -> list[str]:
    """Test top-1 over the seeds of each of the sweep's settings (what a seed sweep is run
    for): jobs that differ in their seed alone, never pooled across models or rates."""
    settings = sweep.settings()
    spreads = []
    for setting, members in settings.items():
        values = [v for run in members if (v := run.metric("test_top1")) is not None]
        if len(values) > 1:
            spreads.append((setting, values))
    if len(settings) == 1 and spreads:
        [(_, values)] = spreads
        return [f"Test top-1 over the {len(values)} jobs: {_spread(values)}."]
    if not spreads:
        return []
    lines = ["Test top-1 over the seeds of each setting (jobs that differ in their seed "
             "alone; settings are never pooled):", ""]
    for setting, values in spreads:
        named = ", ".join(f"{k}={v}" for k, v in zip(sweep.setting_keys, setting, strict=True))
        lines.append(f"- `{named}`: {_spread(values)} over {len(values)} jobs.")
    return lines


def _spread(values: list[float]) -> str:
    return (f"mean {statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f} (sample "
            f"std), min {min(values):.2f}, max {max(values):.2f}")


def _runs_section(runs: list[Run]) -> list[str]:
    lines = ["## Every run", "",
             "| Run | Experiment | Model | Dataset | Seed | Epochs | Params | Test top-1 | "
             "Test error | Best val top-1 | Wall (s) | Overrides |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for run in runs:
        r = run.results
        overrides = " ".join(run.changes())
        check = (f" (check run: {r['limit_batches']} batches, not counted)"
                 if run.check_run else "")
        lines.append(f"| `{_path(run.directory)}`{check} | {r.get('experiment') or '—'} | "
                     f"{r.get('arch', '—')} | {r.get('dataset', '—')} | {r.get('seed', '—')} | "
                     f"{r.get('epochs', '—')} | {r.get('params', 0):,} | "
                     f"{_num(run.metric('test_top1'))} | {_num(run.metric('test_error'))} | "
                     f"{_num(best_val_top1(run.results))} | {_num(_wall(run), digits=0)} | "
                     f"{f'`{overrides}`' if overrides else '—'} |")
    return [*lines, ""]


# -- CSV ----------------------------------------------------------------------------------------
def _write_rows_csv(rows: list[RowResult], notes: dict[Path, list[str]], path: Path) -> None:
    """One line per table number: ours, its 95 % interval (``se`` is the combined one SE,
    ``se_test`` the test set's binomial part, ``se_seeds`` s/sqrt(n)), the verdict, and the
    reasons for a † (``departures``, each prefixed by its run)."""
    fields = ["table", "paper", "paper_table", "row", "preset", "dataset", "metric", "paper_value",
              "n", "mean", "std", "test_images", "se_test", "se_seeds", "se", "ci95_low",
              "ci95_high", "difference", "verdict", "runs", "departures"]
    with open(path, "w", newline="") as fh:
        out = csv.DictWriter(fh, fieldnames=fields)
        out.writeheader()
        for r in rows:
            ci = r.interval
            out.writerow({"table": r.table.name, "paper": r.row.paper, "paper_table": r.row.table,
                          "row": r.row.row, "preset": r.row.preset,
                          "dataset": r.number.dataset, "metric": r.number.metric,
                          "paper_value": r.number.value, "n": r.n, "mean": _csv(r.mean),
                          "std": _csv(r.std),
                          "test_images": "" if r.test_images is None else r.test_images,
                          "se_test": _csv(ci.se_test if ci else None),
                          "se_seeds": _csv(ci.se_seeds if ci else None),
                          "se": _csv(ci.se if ci else None),
                          "ci95_low": _csv(ci.low if ci else None),
                          "ci95_high": _csv(ci.high if ci else None),
                          "difference": _csv(r.difference), "verdict": r.verdict,
                          "runs": " ".join(_path(run.directory) for run in r.runs),
                          "departures": " | ".join(
                              f"{_path(run.directory)}: {why}" for run in r.runs
                              for why in notes.get(run.directory, []))})


def _write_runs_csv(runs: list[Run], path: Path) -> None:
    fields = ["run", "experiment", "paper", "paper_table", "row", "model", "arch", "dataset",
              "seed", "epochs", "params", "test_images", "precision", "test_top1", "test_error",
              "best_val_top1", "wall_s", "overrides"]
    with open(path, "w", newline="") as fh:
        out = csv.DictWriter(fh, fieldnames=fields)
        out.writeheader()
        for run in runs:
            r: dict[str, Any] = run.results
            p = run.paper or {}
            out.writerow({"run": _path(run.directory), "experiment": r.get("experiment"),
                          "paper": p.get("paper"), "paper_table": p.get("table"),
                          "row": p.get("row"), "model": r.get("model"), "arch": r.get("arch"),
                          "dataset": r.get("dataset"), "seed": r.get("seed"),
                          "epochs": r.get("epochs"), "params": r.get("params"),
                          "test_images": run.test_images, "precision": r.get("precision"),
                          "test_top1": _csv(run.metric("test_top1")),
                          "test_error": _csv(run.metric("test_error")),
                          "best_val_top1": _csv(best_val_top1(run.results)),
                          "wall_s": _csv(_wall(run)),
                          "overrides": " ".join(r.get("overrides", []))})


def _csv(value: float | None) -> str:
    return "" if value is None else repr(float(value))


__all__ = ["default_out", "write_report"]
