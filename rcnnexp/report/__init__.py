"""``rcnnexp report``: finished runs against the papers' tables, as Markdown, CSV and PNGs.

It reads what runs wrote (results.json, metrics.csv) and the tables the config defines
(``conf/table``, ``conf/experiment``); it trains nothing and imports no model.
"""

from rcnnexp.report.write import default_out, write_report

__all__ = ["default_out", "write_report"]
