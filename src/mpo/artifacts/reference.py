"""CI-checked regeneration of every table and figure from committed metrics (no training in CI).

A *reference set* is a small results root committed to git — metrics, evaluation summaries, warm-up metrics and
benchmarks, no checkpoints — plus ``baseline/``: the tables (Markdown + CSV), the figures (PNG) and the CSV behind
each figure rendered from it, and ``baseline/MANIFEST.json`` (sha256 of every file). Two sets exist:

* ``reference`` — ``results/reference/``: the metrics of a full default-config run (fill it with ``--collect``);
* ``fixture``   — ``tests/fixtures/runs/``: synthetic metrics (tests/fixtures/runs/make_fixtures.py) that exercise
  every artifact, MISSING cells included.

``tests/test_artifacts_reference.py`` re-renders each set and fails when a CSV or Markdown file differs by a single
byte (sha256) or a PNG differs beyond ``TOLERANCE`` (``matplotlib.testing.compare.compare_images``, RMS of 0-255
pixel values). A deliberate change of tables, figures or their data is accepted by regenerating the baselines with
ONE command and committing the result::

    python -m mpo.artifacts.reference --regenerate            # every set (or: --set fixture / --set reference)

Other commands::

    python -m mpo.artifacts.reference --check                 # what the test does; exit 1 on any difference
    python -m mpo.artifacts.reference --collect results/default   # copy a finished run's small metrics into
                                                                  # results/reference/ (then --regenerate)

Tables 4 and 7 are not part of the sets: they need the prepared datasets, a tokenizer and model weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mpo.config import REPO_ROOT, load_config

TOLERANCE = 2.0  # RMS difference (0-255 scale) allowed between a regenerated PNG and its baseline
REGENERATE_CMD = "python -m mpo.artifacts.reference --regenerate"


@dataclass(frozen=True)
class ReferenceSet:
    name: str
    root: Path  # results root (runs/, eval/, models/, benchmarks/)
    config: Path

    @property
    def baseline(self) -> Path:
        return self.root / "baseline"

    def exists(self) -> bool:
        return self.config.is_file()


SETS = {
    "reference": ReferenceSet("reference", REPO_ROOT / "results" / "reference", REPO_ROOT / "results" / "reference" / "config.yaml"),
    "fixture": ReferenceSet("fixture", REPO_ROOT / "tests" / "fixtures" / "runs", REPO_ROOT / "tests" / "fixtures" / "runs" / "config.yaml"),
}


def available_sets() -> list[str]:
    return [n for n, s in SETS.items() if s.exists()]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def render_set(ref: ReferenceSet, outdir: Path, names: list[str] | None = None) -> dict[str, dict[str, Path]]:
    """Render tables (md, csv) and figures (png, csv; no pdf) of a reference set into `outdir`."""
    import matplotlib

    matplotlib.use("Agg")
    from mpo.artifacts import render

    cfg = load_config(ref.config)
    return render.render_all(cfg, ref.root, outdir, names=names, pdf=False)


def _environment() -> dict:
    import matplotlib
    from matplotlib import ft2font

    return {"matplotlib": matplotlib.__version__, "freetype": ft2font.__freetype_version__}


def regenerate(set_name: str) -> Path:
    """Rewrite `set_name`'s baseline/ (files + MANIFEST.json) from its metrics."""
    ref = SETS[set_name]
    if not ref.exists():
        raise FileNotFoundError(f"reference set '{set_name}' has no {ref.config} (for 'reference': --collect first)")
    tmp = Path(tempfile.mkdtemp(prefix="mpo-baseline-"))
    try:
        outputs = render_set(ref, tmp)
        if ref.baseline.exists():
            shutil.rmtree(ref.baseline)
        shutil.copytree(tmp, ref.baseline)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    files = {}
    for name, paths in outputs.items():
        for kind, p in paths.items():
            rel = p.relative_to(tmp)
            files[str(rel)] = {"artifact": name, "kind": kind, "sha256": _sha256(ref.baseline / rel)}
    manifest = {"set": set_name, "regenerate": REGENERATE_CMD, "png_tolerance_rms": TOLERANCE,
                "rendered_with": _environment(), "files": dict(sorted(files.items()))}
    (ref.baseline / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return ref.baseline


def check(set_name: str, workdir: str | Path | None = None, names: list[str] | None = None,
          root: str | Path | None = None) -> list[str]:
    """Re-render `set_name` (optionally only `names`, optionally from another results `root`) and compare it with
    the committed baseline. Returns the list of problems (empty = identical within tolerance)."""
    from matplotlib.testing.compare import compare_images

    ref = SETS[set_name]
    manifest_path = ref.baseline / "MANIFEST.json"
    if not manifest_path.is_file():
        return [f"{set_name}: no baseline ({manifest_path}); create it with `{REGENERATE_CMD} --set {set_name}`"]
    manifest = json.loads(manifest_path.read_text())
    own_tmp = workdir is None
    out = Path(workdir or tempfile.mkdtemp(prefix="mpo-check-"))
    problems = []
    try:
        src = ReferenceSet(ref.name, Path(root), ref.config) if root else ref
        outputs = render_set(src, out, names)
        expected = {rel: e for rel, e in manifest["files"].items() if names is None or e["artifact"] in names}
        produced = {str(p.relative_to(out)): p for paths in outputs.values() for p in paths.values()}
        for rel in sorted(set(expected) - set(produced)):
            problems.append(f"{set_name}: {rel} is in the baseline but was not rendered")
        for rel in sorted(set(produced) - set(expected)):
            problems.append(f"{set_name}: {rel} was rendered but has no baseline")
        for rel in sorted(set(expected) & set(produced)):
            new = produced[rel]
            if rel.endswith(".png"):
                base = ref.baseline / rel
                if not base.is_file():
                    problems.append(f"{set_name}: baseline image {base} is missing")
                    continue
                try:
                    res = compare_images(str(base), str(new), tol=manifest.get("png_tolerance_rms", TOLERANCE),
                                         in_decorator=True)
                except Exception as e:  # e.g. image sizes differ
                    problems.append(f"{set_name}: {rel}: {e}")
                    continue
                if res is not None:
                    problems.append(f"{set_name}: {rel} differs from the baseline: RMS {res['rms']:.3f} > "
                                    f"{res['tol']} (diff image: {res['diff']})")
            elif _sha256(new) != expected[rel]["sha256"]:
                problems.append(f"{set_name}: {rel} (the data) differs from the baseline (sha256)")
    finally:
        if own_tmp and not problems:
            shutil.rmtree(out, ignore_errors=True)
    return problems


# Files of a finished run that the artifacts read (all small); checkpoints stay out of git, and of completions.jsonl
# only each row's id, sample and grade (the paired tests' per-problem grades), not the generated text.
COLLECT_PATTERNS = [
    "runs/*/*/*/metrics.jsonl",
    "runs/*/*/*/summary.json",
    "runs/*/*/*/resolved_config.yaml",
    "eval/*/*/*/summary.json",
    "models/*/mtp_k*/metrics.json",
    "benchmarks/update_step.json",
]
GRADES_PATTERN = "eval/*/*/*/completions.jsonl"
GRADE_KEYS = ("id", "sample", "grade")


def collect(results: str | Path, dest: str | Path | None = None) -> Path:
    """Copy the metrics of a finished run (results/<name>) into the reference set (results/reference/)."""
    results = Path(results)
    dest = Path(dest) if dest else SETS["reference"].root
    cfg_src = results / "config.resolved.yaml"
    if not cfg_src.is_file():
        raise FileNotFoundError(f"{cfg_src} not found: is {results} a results root written by the pipeline?")
    for sub in ("runs", "eval", "models", "benchmarks"):
        shutil.rmtree(dest / sub, ignore_errors=True)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(cfg_src, dest / "config.yaml")
    n = 0
    for pattern in COLLECT_PATTERNS:
        for src in sorted(results.glob(pattern)):
            target = dest / src.relative_to(results)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
            n += 1
    for src in sorted(results.glob(GRADES_PATTERN)):
        target = dest / src.relative_to(results)
        target.parent.mkdir(parents=True, exist_ok=True)
        rows = [json.loads(x) for x in src.read_text().splitlines() if x.strip()]
        target.write_text("".join(json.dumps({k: r.get(k) for k in GRADE_KEYS}) + "\n" for r in rows))
        n += 1
    print(f"collected {n} files from {results} into {dest}; now run `{REGENERATE_CMD} --set reference`")
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mpo.artifacts.reference", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--regenerate", action="store_true", help="rewrite the baselines (deliberate changes only)")
    mode.add_argument("--check", action="store_true", help="compare freshly rendered artifacts with the baselines")
    mode.add_argument("--collect", metavar="RESULTS", help="copy a finished run's metrics into results/reference/")
    ap.add_argument("--set", choices=list(SETS), action="append", help="reference set(s) (default: all present)")
    args = ap.parse_args(argv)
    if args.collect:
        collect(args.collect)
        return 0
    names = args.set or available_sets()
    if args.regenerate:
        for n in names:
            print(f"{n}: baseline written to {regenerate(n)}")
        return 0
    problems = [p for n in names for p in check(n)]
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"\n{len(problems)} difference(s). If the change is intended: {REGENERATE_CMD}", file=sys.stderr)
        return 1
    print(f"all artifacts of {', '.join(names)} match their baselines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
