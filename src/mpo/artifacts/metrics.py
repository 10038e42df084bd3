"""Canonical names of the per-step training metrics the artifacts read (docs/method.md §7).

The trainer writes one JSON line per step (``metrics.jsonl``); :func:`canonicalize` renames its keys to the canonical
names below, so a renamed trainer key is a one-line change here. Nested dicts are flattened to ``a/b`` and lists to
``key/k1, key/k2, ...`` before this mapping is applied (see ``common.load_metrics``).

Per-MTP-module columns are ``mtp_top1/k<k>`` and ``mtp_rank/k<k>`` (k = 1 .. K-1: module k predicts the token k steps
beyond the backbone's next token).
"""

from __future__ import annotations

import re

import pandas as pd

# canonical name -> trainer keys that mean it (first present wins)
ALIASES: dict[str, tuple[str, ...]] = {
    "step": ("step", "iteration", "global_step"),
    "reward": ("reward_mean", "reward/mean", "reward"),
    "reward_std": ("reward_std", "reward/std"),
    "adv_nonzero_frac": ("adv_nonzero_frac", "advantages/nonzero_frac"),  # not logged yet (see collect_beyond)
    "accuracy": ("accuracy", "acc", "reward/accuracy"),
    "response_length": ("response_length", "response_length_mean", "response_length/mean", "length"),
    "ratio_mean": ("ratio_mean", "token_ratio_mean", "ratio/mean"),
    "ratio_var": ("ratio_var", "token_ratio_var", "ratio/var"),
    "block_ratio_mean": ("block_ratio_mean", "rtilde_mean", "block_ratio/mean"),
    "block_ratio_var": ("block_ratio_var", "rtilde_var", "block_ratio/var"),
    "clip_frac": ("clip_frac", "clip_fraction", "clipfrac", "policy/clip_frac"),
    "approx_kl": ("approx_kl", "kl", "policy/approx_kl"),
    "entropy": ("entropy", "policy/entropy"),
    "policy_loss": ("policy_loss", "loss/policy", "pg_loss"),
    "value_loss": ("value_loss", "loss/value", "vf_loss"),
    "grad_norm": ("grad_norm", "policy/grad_norm", "actor_grad_norm"),
    "time_rollout": ("time_rollout", "time/rollout", "seconds_rollout", "timing/rollout"),
    "time_old_logprob": ("time_old_logprob", "time/old_logprob", "seconds_old_logprob", "timing/old_logprob"),
    "time_update": ("time_update", "time/update", "seconds_update", "timing/update"),
    "time_step": ("time_step", "time/step", "seconds_per_step", "seconds_step", "timing/step"),
    "peak_mem_mb": ("peak_mem_mb", "peak_memory_mb", "memory/peak_mb", "mem_peak_mb"),
}

# per-module families: canonical prefix -> trainer prefixes (followed by '/k<k>', '_k<k>' or '/<k>')
MODULE_ALIASES: dict[str, tuple[str, ...]] = {
    "mtp_top1": ("mtp_top1", "mtp/top1", "mtp_acc", "mtp/acc"),
    "mtp_rank": ("mtp_rank", "mtp/mean_rank", "mtp_mean_rank", "mtp/rank"),
}

CANONICAL = tuple(ALIASES)


def canonicalize(df: pd.DataFrame) -> pd.DataFrame:
    """Rename trainer columns to canonical names; keep other columns as they are."""
    rename: dict[str, str] = {}
    cols = set(df.columns)
    for canon, keys in ALIASES.items():
        if canon in cols:
            continue
        for k in keys:
            if k in cols and k not in rename:
                rename[k] = canon
                break
    for canon, prefixes in MODULE_ALIASES.items():
        for col in df.columns:
            for p in prefixes:
                m = re.fullmatch(re.escape(p) + r"(?:/k|_k|/|_)(\d+)", col)
                if m and col not in rename:
                    rename[col] = f"{canon}/k{int(m.group(1))}"
                    break
    out = df.rename(columns=rename)
    out = out.loc[:, ~out.columns.duplicated()]
    if "time_step" not in out.columns:
        parts = [c for c in ("time_rollout", "time_old_logprob", "time_update") if c in out.columns]
        if parts:
            out["time_step"] = out[parts].sum(axis=1, min_count=len(parts))
    return out


def module_columns(df: pd.DataFrame, family: str) -> dict[int, str]:
    """{k: column} of a per-module family ('mtp_top1' or 'mtp_rank') present in `df`, sorted by k."""
    found = {}
    for col in df.columns:
        m = re.fullmatch(re.escape(family) + r"/k(\d+)", str(col))
        if m:
            found[int(m.group(1))] = col
    return dict(sorted(found.items()))


def ratio_var_column(df: pd.DataFrame) -> str | None:
    """The importance-ratio variance the method optimises with: rtilde's (MPO) if logged, else the token ratio's."""
    for c in ("block_ratio_var", "ratio_var"):
        if c in df.columns and df[c].notna().any():
            return c
    return None
