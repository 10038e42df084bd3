"""Render artifacts to files: one table (Markdown + CSV) or one figure (PNG + PDF + the CSV behind it), or all of them.

Used by the CLI (``python -m mpo.artifacts``), the figure notebooks (which call the same two steps: collect the
data, plot it) and the CI reference check (``mpo.artifacts.reference``). What exists is the registry
(:mod:`mpo.artifacts.registry`).
"""

from __future__ import annotations

from pathlib import Path

from mpo.artifacts import collect, registry
from mpo.artifacts.common import write_frame_csv, write_table
from mpo.artifacts.seeds import for_experiment

TABLE_NAMES = list(registry.TABLE_NAMES)
FIGURE_NAMES = list(registry.FIGURE_NAMES)
ARTIFACTS = list(registry.ARTIFACT_NAMES)


def render_table(name: str, cfg: dict, results, out_md, out_csv) -> str:
    """Build table `name` from the results root and write it; returns the Markdown."""
    a = registry.get(name)
    table = a.builder()(for_experiment(cfg, a.experiment), results)
    return write_table(table, cfg, out_md, out_csv)


def figure_data(name: str, cfg: dict, results):
    a = registry.get(name)
    return a.collector()(for_experiment(cfg, a.experiment), results)


def plot_figure(name: str, df, cfg: dict):
    return registry.get(name).builder()(df, collect.meta(cfg))


def render_figure(name: str, cfg: dict, results, out_png=None, out_pdf=None, out_csv=None):
    """Collect the data of figure `name`, plot it, write PNG/PDF/CSV; returns (DataFrame, Figure)."""
    from mpo.artifacts import figures

    df = figure_data(name, cfg, results)
    fig = plot_figure(name, df, cfg)
    if out_csv:
        write_frame_csv(df, out_csv)
    figures.save(fig, out_png, out_pdf)
    return df, fig


def output_paths(name: str, outdir: str | Path) -> dict[str, Path]:
    """Where `render_all` puts artifact `name` under `outdir` (same layout as results/<name>/{tables,figures})."""
    outdir = Path(outdir)
    if name in TABLE_NAMES:
        return {"md": outdir / "tables" / f"{name}.md", "csv": outdir / "tables" / f"{name}.csv"}
    return {"png": outdir / "figures" / f"{name}.png", "pdf": outdir / "figures" / f"{name}.pdf",
            "csv": outdir / "figures" / f"{name}.csv"}


def render_all(cfg: dict, results, outdir, names: list[str] | None = None, pdf: bool = True) -> dict[str, dict]:
    """Render `names` (default: every artifact built from a results root alone, registry.REFERENCE_NAMES)."""
    out = {}
    for name in names or registry.REFERENCE_NAMES:
        paths = output_paths(name, outdir)
        if name in TABLE_NAMES:
            render_table(name, cfg, results, paths["md"], paths["csv"])
        else:
            if not pdf:
                paths.pop("pdf")
            render_figure(name, cfg, results, paths["png"], paths.get("pdf"), paths["csv"])
        out[name] = paths
    return out
