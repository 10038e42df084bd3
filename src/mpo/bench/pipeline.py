"""**pipeline**: a per-rule table of the Snakemake ``benchmark:`` files of a results folder, with totals."""

from __future__ import annotations

import csv
from pathlib import Path


def pipeline_table(results: Path) -> list[dict]:
    """One row per Snakemake benchmark file under results/benchmarks/rules/<rule>/<wildcards...>.tsv."""
    root = Path(results) / "benchmarks" / "rules"
    rows = []
    for f in sorted(root.rglob("*.tsv")):
        with open(f) as fh:
            recs = list(csv.DictReader(fh, delimiter="\t"))
        if not recs:
            continue
        r = recs[-1]
        rel = f.relative_to(root).with_suffix("")
        rows.append({"rule": rel.parts[0], "job": "/".join(rel.parts[1:]), "s": float(r["s"]),
                     "cpu_time": float(r.get("cpu_time") or "nan"), "max_rss_mb": float(r.get("max_rss") or "nan")})
    return rows


def write_pipeline(rows: list[dict], out_md: Path, out_csv: Path, results: Path) -> None:
    by_rule: dict[str, list[dict]] = {}
    for r in rows:
        by_rule.setdefault(r["rule"], []).append(r)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(out_csv, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=["rule", "job", "s", "cpu_time", "max_rss_mb"])
        wr.writeheader()
        wr.writerows(rows)
    total = sum(r["s"] for r in rows)
    lines = [f"**Pipeline wall time per rule** — `{results}` (Snakemake `benchmark:` files; job seconds, "
             "summed: jobs that ran in parallel overlap)", "",
             "| Rule | Jobs | Total s | Mean s | Max s | Max RSS (MB) |", "|---|---:|---:|---:|---:|---:|"]
    for rule, rs in sorted(by_rule.items(), key=lambda kv: -sum(r["s"] for r in kv[1])):
        s = [r["s"] for r in rs]
        lines.append(f"| {rule} | {len(rs)} | {sum(s):.1f} | {sum(s) / len(s):.1f} | {max(s):.1f} | "
                     f"{max(r['max_rss_mb'] for r in rs):.0f} |")
    lines.append(f"| **all** | {len(rows)} | {total:.1f} | | | |")
    out_md.write_text("\n".join(lines) + "\n")
