"""The report's figures, read back from their matplotlib Axes rather than their pixels: ticks
a reader can read values off, training loss and learning rate with the cuts marked, legends
that say what tells runs apart, a sweep over models drawn per model and never averaged
across them, and a table's † and error bars.

The runs are made of their files alone (results.json, metrics.csv, the stored config), or of
the real runs in results/: nothing trains here.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from conftest import REPO, compose_config, write_run_files
from matplotlib.axis import Axis
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from rcnnexp.report import plots, write_report
from rcnnexp.report.aggregate import RowResult, find_sweeps, match_rows
from rcnnexp.report.catalogue import load_tables
from rcnnexp.report.history import lr_cuts
from rcnnexp.report.runs import Run, find_runs, load_run, read_history
from rcnnexp.sweep import job_number

CONF = REPO / "conf"
PLATEAU_RUN = REPO / "results" / "rcnn-t4-rcnn32-searched-seed0"  # lr ÷10 at epochs 9, 14, 17
COSINE_RUN = REPO / "results" / "digits-default" / "3"  # cosine to 1.8e-08, no cut


@pytest.fixture
def figures() -> Iterator[list[Figure]]:
    """Figures a test draws, freed after it."""
    made: list[Figure] = []
    yield made
    for fig in made:
        plt.close(fig)


def labelled(axis: Axis) -> list[str]:
    """The tick labels a reader sees on ``axis``: shown, not empty, inside its view."""
    axis.figure.canvas.draw()
    low, high = sorted(axis.get_view_interval())
    span = high - low
    return [label.get_text() for loc, label in zip(axis.get_majorticklocs(),
                                                   axis.get_majorticklabels(), strict=True)
            if low - 1e-9 * span <= loc <= high + 1e-9 * span
            and label.get_visible() and label.get_text()]


def run_with(errors: Sequence[float], *, lr: Sequence[float] | None = None,
             name: str = "run") -> Run:
    """A run of one validation error per epoch, its training loss falling alongside."""
    rows = []
    for epoch, error in enumerate(errors, 1):
        row = {"epoch": float(epoch), "val_top1": 100.0 - error, "train_loss": error / 40}
        if lr is not None:
            row["lr"] = lr[epoch - 1]
        rows.append(row)
    return Run(Path(name), {"dataset": "digits", "overrides": []}, rows, [], None)


# -- readable ticks -----------------------------------------------------------------------------
@pytest.mark.parametrize("errors", [
    [89.0, 86.5],  # two epochs inside one decade: a log axis labelled nothing between 85 and 90
    [90.0, 40.0, 12.0, 3.0, 0.5],  # a long run over two decades
    [90.0, 20.0, 2.2, 0.0, 0.6],  # ... that reaches 0 % (every validation image right)
])
def test_every_numeric_axis_of_the_curves_labels_at_least_three_ticks(
        errors: list[float], figures: list[Figure]) -> None:
    lr = [0.01] * len(errors)
    fig = plots.curves_figure([run_with(errors, lr=lr)], ["a run"], "curves")
    figures.append(fig)
    for ax in fig.axes:
        assert len(labelled(ax.yaxis)) >= 3, (ax.get_ylabel(), labelled(ax.yaxis))
    epochs = labelled(fig.axes[-1].xaxis)
    assert len(epochs) >= 2 and all(e.isdigit() for e in epochs), epochs


def test_a_run_of_one_epoch_is_drawn_on_whole_epochs(figures: list[Figure]) -> None:
    fig = plots.curves_figure([run_with([99.0])], ["a run"], "curves")
    figures.append(fig)
    assert labelled(fig.axes[-1].xaxis) == ["0", "1"]


def test_the_size_figure_labels_parameter_counts_across_their_range(
        figures: list[Figure]) -> None:
    rows = [r for r in match_rows(load_tables(CONF), []) if r.table.name == "recnet/t3"]
    fig = plots.size_figure(rows)
    figures.append(fig)
    for ax in fig.axes:
        counts = labelled(ax.xaxis)
        assert len(counts) >= 3 and "1M" in counts, counts  # not 10^6 alone


# -- training loss, learning rate, cuts ----------------------------------------------------------
def test_a_plateau_schedules_cuts_are_found_and_a_cosines_tail_is_none() -> None:
    assert lr_cuts(read_history(PLATEAU_RUN / "metrics.csv")) == [9.0, 14.0, 17.0]
    cosine = read_history(COSINE_RUN / "metrics.csv")
    assert cosine[-1]["lr"] < cosine[-4]["lr"] / 100  # it falls by far more than 10 at the end
    assert lr_cuts(cosine) == []
    warm_then_step = [{"epoch": e, "lr": lr} for e, lr in enumerate([0.05, 0.1, 0.01, 0.01], 1)]
    assert lr_cuts(warm_then_step) == [3]  # held after the cut, though not before it


def test_curves_show_loss_and_learning_rate_with_each_cut_marked_on_every_panel(
        figures: list[Figure]) -> None:
    run = load_run(PLATEAU_RUN)
    assert run is not None
    fig = plots.curves_figure([run], ["seed 0"], "curves")
    figures.append(fig)
    error, loss, lr = fig.axes
    assert "error" in error.get_ylabel() and loss.get_ylabel() == "training loss"
    assert lr.get_ylabel() == "learning rate" and lr.get_yscale() == "log"
    history = read_history(PLATEAU_RUN / "metrics.csv")
    assert list(lr.lines[0].get_ydata()) == [row["lr"] for row in history]
    assert list(loss.lines[0].get_ydata()) == [row["train_loss"] for row in history]
    for ax in (error, loss, lr):
        vertical = sorted(line.get_xdata()[0] for line in ax.lines
                          if len(set(line.get_xdata())) == 1 and line.get_linestyle() == ":")
        assert vertical == [8.5, 13.5, 16.5], ax.get_ylabel()  # between the old rate and new


# -- legends ------------------------------------------------------------------------------------
def sweep_of(root: Path, jobs: Sequence[Sequence[str]], **metrics: Sequence[float]) -> Path:
    """A sweep folder: Hydra's multirun.yaml and one job per override list, job folders named
    as a sweep names them (``0_model.K=4``: the number, then the swept values)."""
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    for n, overrides in enumerate(jobs):
        values = {k: v[n] for k, v in metrics.items()}
        write_run_files(root / f"{n}_{'_'.join(o for o in overrides if 'seed' not in o)}",
                        list(overrides), dataset="digits", **values)
    return root


def test_a_sweeps_jobs_are_labelled_by_their_swept_values(tmp_path: Path,
                                                          figures: list[Figure]) -> None:
    from rcnnexp.report.labels import run_labels

    sweep_of(tmp_path / "sweep", [["model.K=4", "trainer.seed=0"], ["model.K=4", "trainer.seed=1"],
                                  ["model.K=8", "trainer.seed=0"], ["model.K=8", "trainer.seed=1"]])
    runs = find_runs([tmp_path])
    labels = run_labels(runs)
    assert labels == ["K=4, seed=0", "K=4, seed=1", "K=8, seed=0", "K=8, seed=1"]
    fig = plots.curves_figure(runs, labels, "sweep")
    figures.append(fig)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == labels


def test_a_run_that_kept_a_default_is_labelled_by_the_value_it_ran_with(tmp_path: Path) -> None:
    from rcnnexp.report.labels import run_labels

    write_run_files(tmp_path / "a", [], dataset="digits")
    write_run_files(tmp_path / "b", ["model.K=64"], dataset="digits")
    default = compose_config([]).model.K
    assert run_labels(find_runs([tmp_path])) == [f"K={default}", "K=64"]


def test_runs_that_differ_in_nothing_are_told_apart_by_their_folders(tmp_path: Path) -> None:
    from rcnnexp.report.labels import run_labels

    for name in ("first", "again"):
        write_run_files(tmp_path / name, ["trainer.epochs=3"], dataset="digits")
    # no value differs: each is its preset (none here) and seed, or else its folder
    assert run_labels(find_runs([tmp_path])) == ["again, seed=0", "first, seed=0"]


def test_a_jobs_number_is_read_from_a_bare_folder_or_one_that_names_its_values() -> None:
    assert job_number(Path("3")) == 3
    assert job_number(Path("12_model.K=32_optim.lr=0.1")) == 12
    assert job_number(Path("seed0")) is None and job_number(Path("3_")) is None


# -- a sweep over models ------------------------------------------------------------------------
MODEL_SWEEP = [["model=rcnn", "trainer.seed=0"], ["model=rcnn", "trainer.seed=1"],
               ["model=recnet_30_60", "trainer.seed=0"], ["model=recnet_30_60", "trainer.seed=1"]]
MODEL_TOP1 = [90.0, 92.0, 50.0, 54.0]


def test_a_sweep_over_models_is_drawn_one_point_per_model_with_its_own_seeds(
        tmp_path: Path, figures: list[Figure]) -> None:
    sweep_of(tmp_path / "sweep", MODEL_SWEEP, test_top1=MODEL_TOP1)
    [sweep] = find_sweeps(find_runs([tmp_path]))
    assert sweep.keys == ["model", "trainer.seed"] and sweep.setting_keys == ["model"]
    fig = plots.sweep_figure(sweep, "model", "test_top1")
    figures.append(fig)
    [ax] = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["rcnn", "recnet_30_60"]
    [means] = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert list(means.lines[0].get_ydata()) == [91.0, 52.0]
    bars = [(seg[0][1], seg[1][1]) for seg in means.lines[2][0].get_segments()]
    spreads = [statistics.stdev([90, 92]), statistics.stdev([50, 54])]  # each model's seeds
    assert [b for bar in bars for b in bar] == pytest.approx(
        [91 - spreads[0], 91 + spreads[0], 52 - spreads[1], 52 + spreads[1]])


def report_of(tmp_path: Path) -> str:
    """The report's Markdown of the runs under ``tmp_path/runs``."""
    return write_report([tmp_path / "runs"], tmp_path / "report", CONF,
                        "rcnnexp report").read_text()


def test_a_sweep_over_models_reports_each_models_spread_and_none_across_them(
        tmp_path: Path) -> None:
    sweep_of(tmp_path / "runs" / "sweep", MODEL_SWEEP, test_top1=MODEL_TOP1)
    text = report_of(tmp_path)
    assert "over the 4 jobs" not in text  # 90, 92, 50, 54: a mean of 71.5 describes no model
    assert ("- `model=rcnn`: mean 91.00 ± 1.41 (sample std), min 90.00, max 92.00 over 2 jobs."
            in text)
    assert ("- `model=recnet_30_60`: mean 52.00 ± 2.83 (sample std), min 50.00, max 54.00 "
            "over 2 jobs.") in text
    assert "![test top-1 against model](sweep-0-model.png)" in text
    assert (tmp_path / "report" / "sweep-0-model.png").is_file()


def test_a_seed_sweep_keeps_its_one_spread_over_every_job(tmp_path: Path) -> None:
    sweep_of(tmp_path / "runs" / "seeds", [[f"trainer.seed={s}"] for s in range(3)],
             test_top1=[97.0, 98.0, 99.0])
    text = report_of(tmp_path)
    assert ("Test top-1 over the 3 jobs: mean 98.00 ± 1.00 (sample std), min 97.00, "
            "max 99.00.") in text


# -- a table's figure ---------------------------------------------------------------------------
def table4(errors: dict[str, float]) -> list[RowResult]:
    """RCNN Table 4's rows, each row named in ``errors`` run once on MNIST's 10,000 images."""
    runs = [Run(Path(row), {"dataset": "mnist", "overrides": [], "test_error": error,
                            "test_images": 10_000,
                            "paper": {"paper": "RCNN", "table": "4", "row": row}}, [], [], None)
            for row, error in errors.items()]
    return [r for r in match_rows(load_tables(CONF), runs) if r.table.name == "rcnn/t4"]


def test_the_table_figure_marks_the_rows_that_depart_from_their_protocol(
        figures: list[Figure]) -> None:
    rows = table4({"RCNN-32": 0.50})
    fig = plots.table_figure(rows, "RCNN Table 4", [True, False, False])
    figures.append(fig)
    [ax] = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["RCNN-32†", "RCNN-64", "RCNN-96"]
    [legend] = fig.legends
    assert any(t.get_text().startswith("† departs from its row's protocol")
               for t in legend.get_texts())
    unmarked = plots.table_figure(rows, "RCNN Table 4", [False, False, False])
    figures.append(unmarked)
    assert "†" not in " ".join(t.get_text() for t in unmarked.legends[0].get_texts())


def test_the_table_figure_shows_each_rows_interval_as_a_bar_and_writes_its_half_width(
        figures: list[Figure]) -> None:
    # RCNN-32 one run near the paper's 0.42 %, RCNN-64 one run far off at 85 %: on a linear
    # axis up to 85 the first bar (±0.14), the one whose verdict is in question, is a pixel
    rows = table4({"RCNN-32": 0.50, "RCNN-64": 85.0})
    fig = plots.table_figure(rows, "RCNN Table 4", [False, False, False])
    figures.append(fig)
    [ax] = fig.axes
    [ours] = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    near, far = [r for r in rows if r.n]
    assert near.interval is not None and far.interval is not None and (near.n, far.n) == (1, 1)
    segments = ours.lines[2][0].get_segments()
    for segment, ci in zip(segments, (near.interval, far.interval), strict=True):
        assert (segment[0][1], segment[1][1]) == pytest.approx((ci.low, ci.high))
    fig.canvas.draw()
    low, high = ax.transData.transform(segments[0])[:, 1]
    assert high - low >= 12  # pixels: the near row's interval is seen beside the paper's x
    assert ours.lines[0].get_markerfacecolor() == "none"  # the bar shows through the marker
    assert {"±0.14", "±0.70"} <= {t.get_text() for t in ax.texts}  # 1.96·SE, read off
