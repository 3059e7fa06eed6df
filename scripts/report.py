"""Paper versus run: one Markdown table row per finished run of an experiment preset.

    python scripts/report.py [DIR ...]        # default: outputs/

Reads every ``results.json`` below the given directories (single runs and sweep jobs) and
prints, per paper and table, the row, the paper's number, ours in the same metric, the
difference, and where the run lives. Runs without a paper row (plain `rcnnexp train`) are
counted but not listed. Exits non-zero, with a message, when nothing was found.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def load_runs(roots: list[Path]) -> list[dict[str, Any]]:
    runs = []
    for root in roots:
        for path in sorted(root.rglob("results.json")):
            try:
                runs.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError) as err:
                print(f"skipped {path}: {err}", file=sys.stderr)
    return runs


def _fmt(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.2f}" if sign else f"{value:.2f}"


def table(runs: list[dict[str, Any]]) -> str:
    """One line per (run, reported metric); a run on a dataset the row has no number for
    gets one line with dashes."""
    rows = [r for r in runs if r.get("paper")]
    rows.sort(key=lambda r: (r["paper"]["paper"], r["paper"]["table"], r["paper"]["row"],
                             r.get("dataset") or "", r.get("run_dir", "")))
    lines = ["| Paper | Table | Row | Dataset | Metric (%) | Paper | Ours | Ours - paper "
             "| Epochs | Run |",
             "|---|---|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        p = r["paper"]
        head = f"| {p['paper']} | {p['table']} | {p['row']} | {p.get('dataset') or '—'} |"
        tail = f" {r.get('epochs', '—')} | {r.get('run_dir', '')} |"
        if not p["metrics"]:
            reported = ", ".join(p.get("reported_on", []))
            lines.append(f"{head} (paper: {reported}) | — | — | — |{tail}")
        for m in p["metrics"]:
            lines.append(f"{head} {m['metric']} | {_fmt(m['value'])} | {_fmt(m['ours'])} | "
                         f"{_fmt(m['difference'], True)} |{tail}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", type=Path, default=[Path("outputs")])
    args = parser.parse_args()
    missing = [d for d in args.dirs if not d.is_dir()]
    if missing:
        sys.exit(f"error: no such directory: {', '.join(map(str, missing))}")
    runs = load_runs(args.dirs)
    with_paper = sum(1 for r in runs if r.get("paper"))
    if not with_paper:
        sys.exit(f"error: none of the {len(runs)} runs under {', '.join(map(str, args.dirs))} "
                 "comes from an experiment preset with a paper row "
                 "(rcnnexp train experiment=<paper>/<row>; see docs/experiments.md)")
    print(table(runs))
    print(f"\n{with_paper} runs with a paper row, {len(runs) - with_paper} without.")


if __name__ == "__main__":
    main()
