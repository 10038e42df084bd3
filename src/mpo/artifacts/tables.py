"""The paper's tables 1, 2, 3, 5, 5(a), 5(b) and 6 rebuilt from pipeline outputs, the paper's numbers beside ours.

Each ``tableX(cfg, results) -> Table`` is pure (reads files under the results root, returns strings per cell);
``python -m mpo.artifacts tableX --config C --results R --out-md X.md --out-csv X.csv`` writes it.
Rows are (model, source) pairs: ``ours (<scale>)`` rows from this configuration, ``paper`` rows from
src/mpo/reported.yaml (the paper's own models; at paper scale the model names coincide and the rows sit together).
Accuracy is pass@1 from ``R/eval/<model>/<dataset>/<variant>/summary.json``. An absent input reads ``MISSING``.
"""

from __future__ import annotations

import statistics
from collections import OrderedDict

from mpo.artifacts.common import (
    DATASET_LABELS,
    METHOD_LABELS,
    MISSING,
    NA,
    ZERO_SHOT,
    Table,
    bench_path,
    eval_pass1,
    experiment,
    fmt,
    is_missing,
    load_json,
    load_metrics,
    ours_source,
    variant_params,
)
from mpo.reported import load_reported

PAPER = "paper"


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------


def _ordered_rows(ours: "OrderedDict[str, list[dict]]", paper: "OrderedDict[str, list[dict]]") -> list[dict]:
    """Our rows per model, each followed by the paper's rows of the same model; then the paper's other models."""
    rows: list[dict] = []
    for m, rs in ours.items():
        rows += rs
        rows += paper.get(m, [])
    for m, rs in paper.items():
        if m not in ours:
            rows += rs
    return rows


def _method_columns(cfg: dict, variants: list[str], zero_shot: bool) -> list[tuple[str, str, str]]:
    """[(column label, variant or zero_shot, method)] — one column per variant, labelled by method."""
    cols = [(METHOD_LABELS[ZERO_SHOT], ZERO_SHOT, ZERO_SHOT)] if zero_shot else []
    methods = [variant_params(cfg, v)["method"] for v in variants]
    for v, method in zip(variants, methods):
        label = METHOD_LABELS.get(method, method.upper())
        if methods.count(method) > 1:
            label = f"{label} ({v})"
        cols.append((label, v, method))
    return cols


def _paper_value(block: dict, model: str, column: str):
    row = (block.get("rows") or {}).get(model)
    if row is None or column not in block["columns"]:
        return NA
    v = row[block["columns"].index(column)]
    return NA if v is None else v


def _median(series) -> float | None:
    vals = [float(x) for x in series if not is_missing(x)]
    return statistics.median(vals) if vals else None


def _max(series) -> float | None:
    vals = [float(x) for x in series if not is_missing(x)]
    return max(vals) if vals else None


def _ratio(a, b, digits=2) -> str:
    if isinstance(a, str) or isinstance(b, str):
        return NA if (a == NA or b == NA) else MISSING
    if is_missing(a) or is_missing(b):
        return MISSING
    return f"{a / b:.{digits}f}" if b else NA


def _bench_ratio(given, a, b) -> str:
    """The benchmark's own ``ratio_to_ppo`` (paired under ``bench.interleave``) where it has one, else a / b."""
    return f"{given:.2f}" if given is not None else _ratio(a, b)


def _first_variant(cfg: dict, variants: list[str], method: str, K: int | None = None) -> str | None:
    for v in variants:
        p = variant_params(cfg, v)
        if p["method"] == method and (K is None or p["K"] == K):
            return v
    return None


# ---------------------------------------------------------------------------------------------------------------
# Table 1: HumanEval pass@1
# ---------------------------------------------------------------------------------------------------------------


def table1(cfg: dict, results) -> Table:
    e = experiment(cfg, "main")
    block = load_reported()["table1_humaneval_pass1"]
    cols = _method_columns(cfg, e.variants, e.zero_shot)
    ours: OrderedDict = OrderedDict()
    has_code = "code" in e.datasets
    for m in e.models:
        row = {"Model": m, "Source": ours_source(cfg)}
        for label, v, _ in cols:
            row[label] = fmt(eval_pass1(results, m, "code", v, cfg) if has_code else None)
        ours[m] = [row]
    paper: OrderedDict = OrderedDict()
    for m in block["rows"]:
        row = {"Model": m, "Source": PAPER}
        for label, _, method in cols:
            row[label] = fmt(_paper_value(block, m, method))
        paper[m] = [row]
    columns = ["Model", "Source"] + [c[0] for c in cols]
    notes = ["pass@1 on HumanEval (our `code` dataset: trained on MBPP or its stand-in, tested on HumanEval)."]
    if not has_code:
        notes.append("The config defines no `code` dataset, so every cell of ours is MISSING.")
    return Table("table1", "Table 1: HumanEval pass@1", columns, _ordered_rows(ours, paper), notes,
                 align={"Model": "l", "Source": "l"})


# ---------------------------------------------------------------------------------------------------------------
# Table 2: seconds per iteration (PPO, MPO K=3, K=5)
# ---------------------------------------------------------------------------------------------------------------


def load_bench(results) -> dict | None:
    return load_json(bench_path(results))


def _bench_entry(bench: dict | None, key: str) -> dict | None:
    if not bench:
        return None
    entry = bench.get(key)
    if entry is None and isinstance(bench.get("results"), dict):
        entry = bench["results"].get(key)
    return entry if isinstance(entry, dict) else None


def _bench_model(cfg: dict, bench: dict | None) -> str:
    if bench and isinstance(bench.get("model"), str):
        return bench["model"]
    return next(iter(cfg["models"]))


def _train_stats(cfg: dict, results, model: str, dataset: str, variant: str | None) -> dict:
    """Median seconds per training step and peak memory (MB) of a run; None where absent."""
    if variant is None:
        return {"seconds": None, "peak_mem_mb": None}
    df = load_metrics(results, model, dataset, variant, cfg)
    if df is None:
        return {"seconds": None, "peak_mem_mb": None}
    return {
        "seconds": _median(df["time_step"]) if "time_step" in df.columns else None,
        "peak_mem_mb": _max(df["peak_mem_mb"]) if "peak_mem_mb" in df.columns else None,
    }


TABLE2_COLUMNS = [("PPO", "ppo", None), ("MPO K=3", "mpo", 3), ("MPO K=5", "mpo", 5)]


def table2(cfg: dict, results) -> Table:
    e = experiment(cfg, "efficiency")
    block = load_reported()["table2_speed_s_per_iter"]
    paper_keys = {"PPO": "ppo", "MPO K=3": "mpo_k3", "MPO K=5": "mpo_k5"}
    variants = {label: _first_variant(cfg, e.variants, method, K) for label, method, K in TABLE2_COLUMNS}
    ds = e.datasets[0] if e.datasets else None
    bench = load_bench(results)
    bmodel = _bench_model(cfg, bench)

    def finish(row: dict, values: dict, ratios: dict | None = None) -> dict:
        for label, _, _ in TABLE2_COLUMNS:
            row[label] = values[label] if isinstance(values[label], str) else fmt(values[label], 2)
        for label in ("MPO K=3", "MPO K=5"):  # the benchmark's own (paired) ratio where it has one
            row[f"K={label[-1]} / PPO"] = _bench_ratio((ratios or {}).get(label), values[label], values["PPO"])
        return row

    ours: OrderedDict = OrderedDict()
    for m in e.models:
        vals = {label: (_train_stats(cfg, results, m, ds, v)["seconds"] if ds else None) for label, v in variants.items()}
        ours.setdefault(m, []).append(
            finish({"Model": m, "Source": ours_source(cfg, f"training, median s/step on {ds or MISSING}")}, vals))
    vals, ratios = {}, {}
    for label, _, _ in TABLE2_COLUMNS:
        entry = _bench_entry(bench, paper_keys[label])
        vals[label] = entry.get("median_s") if entry else None
        ratios[label] = entry.get("ratio_to_ppo") if entry else None
    device = (bench or {}).get("device")
    what = "update-step benchmark, median s" + (f" ({device})" if device else "")
    ours.setdefault(bmodel, []).append(finish({"Model": bmodel, "Source": ours_source(cfg, what)}, vals, ratios))
    paper: OrderedDict = OrderedDict()
    for m in block["rows"]:
        vals = {label: _paper_value(block, m, paper_keys[label]) for label, _, _ in TABLE2_COLUMNS}
        paper[m] = [finish({"Model": m, "Source": f"{PAPER} (8x A100 80GB)"}, vals)]
    columns = ["Model", "Source"] + [c[0] for c in TABLE2_COLUMNS] + ["K=3 / PPO", "K=5 / PPO"]
    notes = [
        "Seconds per training iteration (the paper) vs. our median seconds per training step (rollout + old log-probs"
        " + update, from metrics.jsonl) and the median time of one isolated update step (benchmarks/update_step.json).",
        "Ratios to PPO are comparable across hardware; absolute times are not. The benchmark's ratios are its own"
        " `ratio_to_ppo`: with `bench.interleave` each method's updates alternate with PPO's and are divided by"
        " those paired PPO updates (machine speed drifts), so they can differ from the ratio of the printed medians.",
        f"Variants: {', '.join(f'{k} = `{v}`' for k, v in variants.items() if v)}.",
    ]
    return Table("table2", "Table 2: training speed (seconds per iteration)", columns, _ordered_rows(ours, paper), notes,
                 align={"Model": "l", "Source": "l"})


# ---------------------------------------------------------------------------------------------------------------
# Table 3: memory and time per step (PPO, GRPO group 4, MPO K=5)
# ---------------------------------------------------------------------------------------------------------------


def table3(cfg: dict, results) -> Table:
    e = experiment(cfg, "efficiency")
    block = load_reported()["table3_memory_time"]
    spec = [("ppo", "ppo", None, "ppo"), ("grpo", "grpo", None, "grpo"), ("mpo", "mpo", 5, "mpo_k5")]
    variants = {key: _first_variant(cfg, e.variants, method, K) for key, method, K, _ in spec}

    def label(key: str) -> str:
        v = variants[key]
        if key == "grpo":
            g = variant_params(cfg, v)["group_size"] if v else None
            return f"GRPO (group size {g if g is not None else '?'})"
        return "MPO (K=5)" if key == "mpo" else "PPO"

    bench = load_bench(results)
    bmodel = _bench_model(cfg, bench)
    total_mb = (bench or {}).get("device_total_mem_mb") or (bench or {}).get("total_mem_mb")
    ds = e.datasets[0] if e.datasets else None
    rows = []
    ppo_sec = (_bench_entry(bench, "ppo") or {}).get("median_s")

    def bench_row(lab: str, bench_key: str) -> dict:
        entry = _bench_entry(bench, bench_key)
        mem = entry.get("peak_mem_mb") if entry else None
        sec = entry.get("median_s") if entry else None
        return {
            "Method": lab, "Model": bmodel, "Source": ours_source(cfg, "update-step benchmark"),
            "Peak memory (MB)": fmt(mem, 0), "Memory fraction": (fmt(mem / total_mb, 3) if (mem and total_mb) else
                                                                  (MISSING if mem is None else NA)),
            "Time per step (s)": fmt(sec, 3),
            "Time / PPO": _bench_ratio(entry.get("ratio_to_ppo") if entry else None, sec, ppo_sec),
        }

    for key, _, _, bench_key in spec:
        lab = label(key)
        rows.append(bench_row(lab, bench_key))
        # training rows
        for m in e.models:
            st = _train_stats(cfg, results, m, ds, variants[key]) if ds else {"seconds": None, "peak_mem_mb": None}
            ppo = _train_stats(cfg, results, m, ds, variants["ppo"]) if ds else {"seconds": None}
            rows.append({
                "Method": lab, "Model": m, "Source": ours_source(cfg, f"training on {ds or MISSING}"),
                "Peak memory (MB)": fmt(st["peak_mem_mb"], 0), "Memory fraction": NA,
                "Time per step (s)": fmt(st["seconds"], 3), "Time / PPO": _ratio(st["seconds"], ppo["seconds"]),
            })
        # paper row
        pcols = block["columns"]
        prow = block["rows"].get(key)
        frac = prow[pcols.index("gpu_memory_fraction")] if prow else None
        psec = prow[pcols.index("seconds_per_step")] if prow else None
        rows.append({
            "Method": lab, "Model": "deepseek-r1-distill-qwen-1.5b", "Source": f"{PAPER} (A100 80GB)",
            "Peak memory (MB)": NA, "Memory fraction": fmt(frac, 3) if frac is not None else NA,
            "Time per step (s)": fmt(psec, 1) if psec is not None else NA,
            "Time / PPO": _ratio(psec, block["rows"]["ppo"][pcols.index("seconds_per_step")]),
        })
    if cfg["bench"]["shared_head"]:  # beyond the paper: K=5 modules sharing the backbone's LM head (mtp.share_head)
        rows.append(bench_row("MPO (K=5, shared LM head)", "mpo_k5_shared_head"))
    columns = ["Method", "Model", "Source", "Peak memory (MB)", "Memory fraction", "Time per step (s)", "Time / PPO"]
    notes = [
        "The paper gives GPU memory as a fraction of one A100 80GB and seconds per step; ours: peak memory in MB"
        " (fraction of the device's memory where the benchmark records it) and the median seconds of one isolated"
        " update step (benchmark) or of a whole training step (training). A benchmark row's Time / PPO is the"
        " benchmark's own `ratio_to_ppo`: with `bench.interleave` against the PPO updates it alternated with.",
        f"Variants: {', '.join(f'`{v}`' for v in variants.values() if v)}.",
    ]
    if cfg["bench"]["shared_head"]:
        notes.append("MPO (K=5, shared LM head), beyond the paper: the same update with freshly initialised modules that"
                     " use the backbone's LM head (mtp.share_head, as DeepSeek-V3 does) instead of four [vocab, d] copies.")
    return Table("table3", "Table 3: memory and time per step", columns, rows, notes,
                 align={"Method": "l", "Model": "l", "Source": "l"})


# ---------------------------------------------------------------------------------------------------------------
# Table 5: hyperparameters
# ---------------------------------------------------------------------------------------------------------------

# paper Table 5 row -> our config key (dotted path) and how to read it
TABLE5_KEYS: list[tuple[str, str, str]] = [
    ("train_batch_size", "Train batch size", "train.batch_size"),
    ("ppo_mini_batch_size", "PPO mini batch size", "train.mini_batch_size"),
    ("ppo_micro_batch_size_per_gpu", "PPO micro batch size / GPU", "train.micro_batch_size"),
    ("n_gpus", "Number of GPUs", "resources.gpu.gpus"),
    ("n_nodes", "Number of nodes", "train.n_nodes"),
    ("max_prompt_length", "Max prompt length", "train.max_prompt_length"),
    ("max_response_length", "Max response length", "train.max_response_length"),
    ("actor_lr", "Learning rate (actor)", "train.lr"),
    ("critic_lr", "Learning rate (critic)", "train.critic_lr"),
    ("total_epochs", "Total epochs", "train.epochs"),
]
_UNSET = object()


def _table5_ours(cfg: dict, key: str, dotted: str) -> str:
    """Our value of a paper Table 5 row, with what it means where our config words it differently."""
    v = _get_path(cfg, dotted)
    t = cfg.get("train") or {}
    if key in ("train_batch_size", "ppo_mini_batch_size", "ppo_micro_batch_size_per_gpu") and v is not _UNSET:
        return f"{_cell(v)} {t.get('batch_unit', 'responses')}"
    if key == "n_gpus":
        gpus = v if v is not _UNSET else (((cfg.get("resources") or {}).get("default") or {}).get("gpus", 0))
        return f"{_cell(gpus)} (device: {cfg.get('device', 'auto')})"
    if key == "n_nodes" and v is _UNSET:
        return "1"
    if key == "critic_lr" and v is None and t.get("lr") is not None:
        return f"{10 * float(t['lr']):g} (null: 10 × actor lr)"
    if key == "total_epochs" and v is None:
        return f"null (train.steps = {_cell(t.get('steps'))} decides)"
    return "not set" if v is _UNSET else _cell(v)


def _get_path(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _UNSET
        node = node[part]
    return node


def _flat(d, prefix=""):
    out = []
    if isinstance(d, dict):
        for k, v in d.items():
            out += _flat(v, f"{prefix}{k}.")
    else:
        out.append((prefix[:-1], d))
    return out


def _cell(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_cell(x) for x in v) + "]"
    return str(v)


def table5(cfg: dict, results=None) -> Table:
    paper = load_reported()["table5_hyperparameters"]
    rows = []
    used = set()
    for key, label, dotted in TABLE5_KEYS:
        pv = paper.get(key)
        rows.append({
            "Section": "paper Table 5", "Parameter": label, "Ours": _table5_ours(cfg, key, dotted),
            "Config key": f"`{dotted}`", "Paper": NA if pv is None else _cell(pv),
        })
        used.add(dotted)
    for key, value in _flat(cfg.get("train") or {}, "train."):
        if key in used:
            continue
        rows.append({"Section": "training (ours)", "Parameter": key.split(".", 1)[1], "Ours": _cell(value),
                     "Config key": f"`{key}`", "Paper": NA})
    for name in cfg.get("variants") or {}:
        p = variant_params(cfg, name)
        desc = ", ".join(f"{k}={_cell(v)}" for k, v in p["raw"].items())
        uses = sorted(x for x, e in (cfg.get("experiments") or {}).items() if name in e.get("variants", []))
        rows.append({"Section": "variant", "Parameter": f"`{name}`", "Ours": desc,
                     "Config key": f"`variants.{name}`" + (f" (experiments: {', '.join(uses)})" if uses else ""),
                     "Paper": NA})
    notes = [
        "Ours: the values of the resolved config this pipeline ran with (`results/<name>/config.resolved.yaml`);"
        " batch sizes count sampled responses unless `train.batch_unit` is `prompts` (the paper, run with verl, counts"
        " prompts). The paper's learning rates were lost in the text extraction"
        " (`–`). For HumanEval the paper extends the response length to 3072 with the DeepSeek-distilled models.",
    ]
    return Table("table5", "Table 5: hyperparameters", ["Section", "Parameter", "Ours", "Config key", "Paper"], rows,
                 notes, align={"Section": "l", "Parameter": "l", "Ours": "l", "Config key": "l", "Paper": "l"})


# ---------------------------------------------------------------------------------------------------------------
# Table 5(a): MPO accuracy by K
# ---------------------------------------------------------------------------------------------------------------

PAPER_ABLATION_MODEL = "deepseek-r1-distill-qwen-1.5b"


def _by_K(cfg: dict, variants: list[str], **match) -> "OrderedDict[int, str]":
    out: OrderedDict = OrderedDict()
    for v in variants:
        p = variant_params(cfg, v)
        if p["method"] != "mpo" or any(p.get(k) != val for k, val in match.items()):
            continue
        out.setdefault(p["K"], v)
    return OrderedDict(sorted(out.items()))


def table5a(cfg: dict, results) -> Table:
    e = experiment(cfg, "ablation_k")
    block = load_reported()["table5a_k_ablation"]
    ks = _by_K(cfg, e.variants)
    rows = []
    for d in e.datasets:
        for m in e.models:
            row = {"Dataset": DATASET_LABELS.get(d, d), "Model": m, "Source": ours_source(cfg)}
            for K, v in ks.items():
                row[f"K={K}"] = fmt(eval_pass1(results, m, d, v, cfg))
            rows.append(row)
        prow = block["rows"].get(d)
        row = {"Dataset": DATASET_LABELS.get(d, d), "Model": PAPER_ABLATION_MODEL, "Source": PAPER}
        for K in ks:
            col = f"k{K}"
            row[f"K={K}"] = fmt(prow[block["columns"].index(col)]) if (prow and col in block["columns"]) else NA
        rows.append(row)
    for d in e.skipped_datasets:
        rows.append({"Dataset": DATASET_LABELS.get(d, d), "Model": NA, "Source": ours_source(cfg),
                     **{f"K={K}": MISSING for K in ks}})
    columns = ["Dataset", "Model", "Source"] + [f"K={K}" for K in ks]
    vdesc = ", ".join(f"K={K}: `{v}`" for K, v in ks.items())
    notes = [f"MPO pass@1 by block size K ({vdesc}); other parameters as defined in the config's variants."]
    return Table("table5a", "Table 5(a): MPO accuracy by K", columns, rows, notes,
                 align={"Dataset": "l", "Model": "l", "Source": "l"})


# ---------------------------------------------------------------------------------------------------------------
# Table 5(b): decay gamma x cumulative MTP share
# ---------------------------------------------------------------------------------------------------------------


def grid_layout(cfg: dict, variants: list[str]) -> tuple[list[float], list[float], dict[tuple[float, float], str]]:
    """Distinct gammas (rows), shares (columns) and {(gamma, share): variant} of the grid experiment's variants."""
    cells: dict[tuple[float, float], str] = {}
    for v in variants:
        p = variant_params(cfg, v)
        if p["method"] != "mpo" or p["gamma"] is None or p["mtp_share"] is None:
            continue
        cells.setdefault((p["gamma"], p["mtp_share"]), v)
    gammas = sorted({g for g, _ in cells})
    shares = sorted({w for _, w in cells})
    return gammas, shares, cells


def table5b(cfg: dict, results) -> Table:
    e = experiment(cfg, "ablation_grid")
    block = load_reported()["table5b_weight_decay_grid"]
    gammas, shares, cells = grid_layout(cfg, e.variants)
    Ks = sorted({variant_params(cfg, v)["K"] for v in cells.values()})
    paper_cells = block["cells"]
    n_pc = max((len(r) for r in paper_cells), default=0)
    ncol = max(len(shares), n_pc)
    col_names = []
    for j in range(ncol):
        ours_part = f"W={shares[j]:g}" if j < len(shares) else "–"
        col_names.append(f"{ours_part} / paper col {j + 1}" if j < n_pc else ours_part)
    rows = []
    for d in e.datasets:
        for m in e.models:
            for g in gammas:
                row = {"Dataset": DATASET_LABELS.get(d, d), "Model": m, "Source": ours_source(cfg), "γ (decay)": f"{g:g}"}
                for j, name in enumerate(col_names):
                    v = cells.get((g, shares[j])) if j < len(shares) else None
                    row[name] = fmt(eval_pass1(results, m, d, v, cfg)) if v else (MISSING if j < len(shares) else NA)
                rows.append(row)
    for i, prow in enumerate(paper_cells):
        row = {"Dataset": "GSM8K", "Model": PAPER_ABLATION_MODEL, "Source": PAPER,
               "γ (decay)": f"paper row {i + 1} (value lost)"}
        for j, name in enumerate(col_names):
            row[name] = fmt(prow[j]) if j < len(prow) and prow[j] is not None else NA
        rows.append(row)
    columns = ["Dataset", "Model", "Source", "γ (decay)"] + col_names
    notes = [
        "MPO pass@1 on a grid of the decay rate γ (rows) and the cumulative MTP share W = Σ_{k≥1} w_k (columns),"
        f" K = {', '.join(str(k) for k in Ks) or MISSING}; w_1 = W(1−γ)/(1−γ^(K−1)), w_0 = 1 − W.",
        "The paper's row and column header values were lost in the text extraction: its cells are printed by position"
        " (paper row i, paper col j) and are not claimed to share our γ and W values.",
    ]
    return Table("table5b", "Table 5(b): decay rate × cumulative MTP weight", columns, rows, notes,
                 align={"Dataset": "l", "Model": "l", "Source": "l", "γ (decay)": "l"})


# ---------------------------------------------------------------------------------------------------------------
# Table 6: MPO vs MPO + MTP value heads
# ---------------------------------------------------------------------------------------------------------------


def table6(cfg: dict, results) -> Table:
    e = experiment(cfg, "value_heads")
    block = load_reported()["table6_mtp_value_heads"]
    settings = [("MPO", False, "mpo"), ("MPO + MTP value heads", True, "mpo_mtp_value_heads")]
    by_setting = {vh: _by_K(cfg, e.variants, value_heads=vh) for _, vh, _ in settings}
    Ks = sorted(set(by_setting[False]) | set(by_setting[True]))
    datasets = e.datasets + e.skipped_datasets
    col = lambda d, K: f"{DATASET_LABELS.get(d, d)} K={K}"  # noqa: E731
    rows = []
    for m in e.models:
        for label, vh, _ in settings:
            row = {"Model": m, "Setting": label, "Source": ours_source(cfg)}
            for d in datasets:
                for K in Ks:
                    v = by_setting[vh].get(K)
                    row[col(d, K)] = fmt(eval_pass1(results, m, d, v, cfg) if (v and d in e.datasets) else None)
            rows.append(row)
    for label, _, key in settings:
        row = {"Model": PAPER_ABLATION_MODEL, "Setting": label, "Source": PAPER}
        for d in datasets:
            for K in Ks:
                row[col(d, K)] = fmt(_paper_value(block, key, f"{d}_k{K}"))
        rows.append(row)
    columns = ["Model", "Setting", "Source"] + [col(d, K) for d in datasets for K in Ks]
    used = {f"K={K}{' +VH' if vh else ''}": v for vh, ks in by_setting.items() for K, v in ks.items()}
    notes = [
        "pass@1 of MPO and of MPO with MTP value heads on the critic (METHOD.md section 5), paper: MTP share 20%.",
        "Variants: " + ", ".join(f"{k} = `{v}`" for k, v in used.items()) + ".",
    ]
    return Table("table6", "Table 6: MTP value heads", columns, rows, notes,
                 align={"Model": "l", "Setting": "l", "Source": "l"})


TABLES = {
    "table1": table1,
    "table2": table2,
    "table3": table3,
    "table5": table5,
    "table5a": table5a,
    "table5b": table5b,
    "table6": table6,
}
