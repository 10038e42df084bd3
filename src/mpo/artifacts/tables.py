"""Every table of the paper (1-7, 5(a), 5(b)) and the `beyond` comparison, built from pipeline outputs with the
paper's numbers beside ours.

Each ``tableX(cfg, results)`` is pure (reads files under the results root) and returns a
:class:`~mpo.artifacts.common.Table` (or, for Tables 4 and 7, which keep their own layout, a
:class:`~mpo.artifacts.common.Rendered`); ``python -m mpo.artifacts tableX --config C --results R --out-md X.md
--out-csv X.csv`` writes it. Which tables exist is the registry :mod:`mpo.artifacts.registry`.
Rows are (model, source) pairs: ``ours (<scale>)`` rows from this configuration, ``paper`` rows from
src/mpo/reported.yaml. An absent input reads ``MISSING``.

The implementations: :mod:`.tables_main` (1, 2, 3), :mod:`.tables_ablation` (5, 5(a), 5(b), 6), :mod:`.table4`,
:mod:`.table7`, :mod:`.tables_beyond` (`beyond`).
"""

from __future__ import annotations

from pathlib import Path

from mpo.artifacts.common import Rendered
from mpo.artifacts.registry import REFERENCE_NAMES, TABLE_NAMES
from mpo.artifacts.tables_ablation import grid_layout, table5, table5a, table5b, table6  # noqa: F401
from mpo.artifacts.tables_beyond import beyond  # noqa: F401
from mpo.artifacts.tables_main import load_bench, main_comparison, table1, table2, table3  # noqa: F401


def table4(cfg: dict, results) -> Rendered:
    """Dataset statistics from R/data/<dataset>/{train,test}.jsonl, lengths under models/<first model>/base's tokenizer."""
    from transformers import AutoTokenizer

    from mpo.artifacts import table4 as t4

    tok_dir = Path(results) / "models" / next(iter(cfg["models"])) / "base"
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    rows = t4.table_rows(cfg, Path(results) / "data", tokenizer)
    return Rendered(t4.to_markdown(rows, cfg, getattr(tokenizer, "name_or_path", None) or str(tok_dir)),
                    t4.csv_text(rows, cfg))


def table7(cfg: dict, results) -> Rendered:
    """Model size of backbone + K-1 MTP modules (architectures from R/models/<model>/base/config.json)."""
    from mpo.artifacts import table7 as t7

    rows = t7.table_rows(cfg, Path(results) / "models")
    return Rendered(t7.to_markdown(rows, cfg), t7.csv_text(rows, cfg))


# the tables built from a results root alone (the CI reference sets render these)
TABLES = {name: globals()[name] for name in TABLE_NAMES if name in REFERENCE_NAMES}
ALL_TABLES = {name: globals()[name] for name in TABLE_NAMES}
