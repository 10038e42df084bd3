"""CLI: ``python -m mpo.artifacts NAME --config CONFIG --results DIR --out-...`` for every artifact of the registry.

    python -m mpo.artifacts table1 --config results/default/config.resolved.yaml --results results/default \\
        --out-md results/default/tables/table1.md --out-csv results/default/tables/table1.csv
    python -m mpo.artifacts table4 --config ... --results ... --out-md F.md --out-csv F.csv   # R/data + R/models
    python -m mpo.artifacts fig4 --config ... --results ... --out-png F.png --out-pdf F.pdf --out-csv F.csv
    python -m mpo.artifacts all --config ... --results ... --outdir DIR      # every artifact built from R alone
    python -m mpo.artifacts list

The artifacts (mpo.artifacts.registry): tables table1-table7, table5a, table5b, beyond; figures fig3 fig4 fig6 fig7
curves regimes beyond_curves (the pipeline draws figures through the notebooks in notebooks/, which call the same
functions). Tables 4 and 7 read the prepared datasets (R/data) and models (R/models) instead of runs.
"""

from __future__ import annotations

import argparse
import sys

from mpo.config import ConfigError, load_config


def _parser(names: list[str]) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m mpo.artifacts", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=names + ["all", "list"])
    ap.add_argument("--config", help="config YAML (validated; defaults filled)")
    ap.add_argument("--results", help="results root, e.g. results/default or results/reference")
    for out in ("md", "csv", "png", "pdf"):
        ap.add_argument(f"--out-{out}")
    ap.add_argument("--outdir", help="with `all`: write tables/ and figures/ under this directory")
    return ap


def _render(ap, args, cfg) -> None:
    from mpo.artifacts import render

    if args.name == "all":
        if not args.outdir:
            ap.error("`all` needs --outdir")
        for name, paths in render.render_all(cfg, args.results, args.outdir).items():
            print(f"{name}: {', '.join(str(p) for p in paths.values())}")
    elif args.name in render.TABLE_NAMES:
        if not (args.out_md and args.out_csv):
            ap.error(f"{args.name} needs --out-md and --out-csv")
        print(render.render_table(args.name, cfg, args.results, args.out_md, args.out_csv))
    else:
        if not (args.out_png or args.out_pdf or args.out_csv):
            ap.error(f"{args.name} needs --out-png, --out-pdf and/or --out-csv")
        render.render_figure(args.name, cfg, args.results, args.out_png, args.out_pdf, args.out_csv)


def main(argv: list[str] | None = None) -> int:
    from mpo.artifacts.registry import ARTIFACT_NAMES

    ap = _parser(ARTIFACT_NAMES)
    args = ap.parse_args(argv)
    if args.name == "list":
        print("\n".join(ARTIFACT_NAMES))
        return 0
    if not args.config or not args.results:
        ap.error("--config and --results are required")
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    try:
        _render(ap, args, cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:  # Tables 4 / 7 before the data or models are prepared
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
