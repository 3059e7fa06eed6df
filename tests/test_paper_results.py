"""results.json puts this run's number next to the paper's, in the paper's metric."""

from __future__ import annotations

import pytest

from rcnnexp.config.root import PaperMetric, PaperResult, PaperValue
from rcnnexp.engine.results import paper_versus_run

RESULTS = {"dataset": "cifar10", "test_top1": 91.5, "test_top5": 99.25, "test_error": 8.5,
           "test_top5_error": 0.75}


def _row(*values: tuple[str, str, float], table: str = "2b", row: str = "e = 8") -> PaperResult:
    return PaperResult(paper="RecNets", table=table, row=row,
                       values=[PaperValue(dataset=d, metric=PaperMetric(m), value=v)
                               for d, m, v in values])


@pytest.mark.parametrize(("metric", "ours"), [("test_error", 8.5), ("test_top1", 91.5),
                                              ("test_top5", 99.25), ("test_top5_error", 0.75)])
def test_our_number_is_taken_in_the_papers_metric(metric: str, ours: float) -> None:
    got = paper_versus_run(_row(("cifar10", metric, 7.37)), RESULTS)
    assert (got["paper"], got["table"], got["row"], got["dataset"]) == (
        "RecNets", "2b", "e = 8", "cifar10")
    [m] = got["metrics"]
    assert m["metric"] == metric and m["ours"] == ours and m["value"] == 7.37
    assert m["difference"] == pytest.approx(ours - 7.37)


def test_only_the_runs_dataset_is_compared() -> None:
    row = _row(("cifar10", "test_top1", 95.47), ("cifar100", "test_top1", 79.33))
    got = paper_versus_run(row, RESULTS)
    assert [m["value"] for m in got["metrics"]] == [95.47]
    other = paper_versus_run(row, {**RESULTS, "dataset": "svhn"})
    assert other["metrics"] == [] and other["reported_on"] == ["cifar10", "cifar100"]


def test_a_row_with_two_metrics_compares_both() -> None:
    row = _row(("imagenet", "test_error", 41.85), ("imagenet", "test_top5_error", 19.15))
    got = paper_versus_run(row, {**RESULTS, "dataset": "imagenet"})
    assert [(m["metric"], m["ours"]) for m in got["metrics"]] == [("test_error", 8.5),
                                                                 ("test_top5_error", 0.75)]


def test_a_run_without_a_test_split_has_no_number_to_compare() -> None:
    got = paper_versus_run(_row(("cifar10", "test_error", 25.0)),
                           {"dataset": "cifar10", "test_error": None})
    assert got["metrics"][0]["difference"] is None
