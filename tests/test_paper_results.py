"""results.json puts this run's number next to the paper's, in the paper's metric."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from rcnnexp.config.root import PaperMetric, PaperResult
from rcnnexp.engine.run import paper_versus_run

RESULTS = {"test_top1": 91.5, "test_top5": 99.25, "test_error": 8.5, "test_top5_error": 0.75}


@pytest.mark.parametrize(("metric", "ours"), [("test_error", 8.5), ("test_top1", 91.5),
                                              ("test_top5", 99.25), ("test_top5_error", 0.75)])
def test_our_number_is_taken_in_the_papers_metric(metric: str, ours: float) -> None:
    row = PaperResult(paper="RCNN", table="3", row="RCNN-96", metric=PaperMetric(metric),
                      value=7.37)
    got = paper_versus_run(row, RESULTS)
    assert got["metric"] == metric and got["ours"] == ours
    assert got["difference"] == pytest.approx(ours - 7.37)
    assert (got["paper"], got["table"], got["row"], got["value"]) == ("RCNN", "3", "RCNN-96", 7.37)


def test_a_run_without_a_test_split_has_no_number_to_compare() -> None:
    row = PaperResult(paper="RecNets", table="2b", row="e = 8", metric=PaperMetric.test_error,
                      value=25.0)
    assert paper_versus_run(row, {"test_error": None})["difference"] is None


def test_report_lists_runs_with_a_paper_row(tmp_path: Path) -> None:
    row = PaperResult(paper="RecNets", table="2b", row="e = 8", metric=PaperMetric.test_error,
                      value=25.0)
    for name, results in {"a": {"test_error": 24.5}, "b": {"test_error": None}}.items():
        (tmp_path / name).mkdir()
        summary = {**results, "epochs": 3, "run_dir": name, "paper": paper_versus_run(row, results)}
        (tmp_path / name / "results.json").write_text(json.dumps(summary))
    (tmp_path / "c").mkdir()  # a plain run: counted, not listed
    (tmp_path / "c" / "results.json").write_text(json.dumps({"paper": None}))
    out = _report(tmp_path)
    assert out.returncode == 0, out.stderr
    assert "| RecNets | 2b | e = 8 | test_error | 25.00 | 24.50 | -0.50 | 3 | a |" in out.stdout
    assert "| 25.00 | — | — | 3 | b |" in out.stdout
    assert "2 runs with a paper row, 1 without." in out.stdout


def test_report_without_paper_runs_says_what_to_run(tmp_path: Path) -> None:
    out = _report(tmp_path)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "experiment=<paper>/<row>" in out.stderr


def _report(*dirs: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "report.py"), *map(str, dirs)],
                          capture_output=True, text=True, check=False)
