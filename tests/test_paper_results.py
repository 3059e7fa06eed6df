"""results.json puts this run's number next to the paper's, in the paper's metric."""

from __future__ import annotations

import pytest

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
