"""Tables 5, 5(a), 5(b) and 6 of the paper (hyperparameters, ablations), the paper's numbers beside ours."""

from __future__ import annotations

from collections import OrderedDict

from mpo.artifacts.common import DATASET_LABELS, MISSING, NA, Table, experiment, fmt, ours_source, variant_params
from mpo.artifacts.seeds import INTERVAL_NOTE, accuracy_cell
from mpo.artifacts.table_helpers import PAPER, paper_value
from mpo.reported import load_reported


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
                row[f"K={K}"] = accuracy_cell(results, m, d, v, cfg)
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
    notes = [f"MPO pass@1 by block size K ({vdesc}); other parameters as defined in the config's variants.",
             INTERVAL_NOTE]
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
                    row[name] = accuracy_cell(results, m, d, v, cfg) if v else (MISSING if j < len(shares) else NA)
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
        INTERVAL_NOTE,
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
                    row[col(d, K)] = accuracy_cell(results, m, d, v if d in e.datasets else None, cfg)
            rows.append(row)
    for label, _, key in settings:
        row = {"Model": PAPER_ABLATION_MODEL, "Setting": label, "Source": PAPER}
        for d in datasets:
            for K in Ks:
                row[col(d, K)] = fmt(paper_value(block, key, f"{d}_k{K}"))
        rows.append(row)
    columns = ["Model", "Setting", "Source"] + [col(d, K) for d in datasets for K in Ks]
    used = {f"K={K}{' +VH' if vh else ''}": v for vh, ks in by_setting.items() for K, v in ks.items()}
    notes = [
        "pass@1 of MPO and of MPO with MTP value heads on the critic (docs/method.md §5), paper: MTP share 20%.",
        "Variants: " + ", ".join(f"{k} = `{v}`" for k, v in used.items()) + ".",
        INTERVAL_NOTE,
    ]
    return Table("table6", "Table 6: MTP value heads", columns, rows, notes,
                 align={"Model": "l", "Setting": "l", "Source": "l"})
