"""CLI: ``python -m mpo.artifacts NAME --config CONFIG --results DIR --out-...``

    python -m mpo.artifacts table1 --config results/default/config.resolved.yaml --results results/default \\
        --out-md results/default/tables/table1.md --out-csv results/default/tables/table1.csv
    python -m mpo.artifacts fig4 --config ... --results ... --out-png F.png --out-pdf F.pdf --out-csv F.csv
    python -m mpo.artifacts all --config ... --results ... --outdir DIR      # every table and figure under DIR
    python -m mpo.artifacts list

Tables: table1 table2 table3 table5 table5a table5b table6. Figures: fig3 fig4 fig6 fig7 curves regimes
(the pipeline draws figures through the notebooks in notebooks/, which call the same functions).
"""

from __future__ import annotations

import argparse
import sys

from mpo.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    from mpo.artifacts.common import ARTIFACT_NAMES

    ap = argparse.ArgumentParser(prog="python -m mpo.artifacts", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=ARTIFACT_NAMES + ["all", "list"])
    ap.add_argument("--config", help="config YAML (validated; defaults filled)")
    ap.add_argument("--results", help="results root, e.g. results/default or results/reference")
    ap.add_argument("--out-md")
    ap.add_argument("--out-csv")
    ap.add_argument("--out-png")
    ap.add_argument("--out-pdf")
    ap.add_argument("--outdir", help="with `all`: write tables/ and figures/ under this directory")
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
    from mpo.artifacts import render

    try:
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
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
