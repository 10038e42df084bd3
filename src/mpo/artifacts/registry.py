"""The one registry of artifacts: every table and figure, what it is built from, what its Snakemake rule needs.

``python -m mpo.artifacts NAME`` renders any entry; workflow/rules/artifacts.smk generates one rule per entry
(rule name :attr:`Artifact.rule`) and one rule per :data:`GROUPS` key, so a new artifact is one entry here (plus its
report caption workflow/report/<name>.rst and, for a notebook figure, notebooks/<name>.ipynb).

Builders are named by ``"module:function"`` and imported on use, so reading the registry (Snakemake parses it on
every invocation) imports neither matplotlib nor transformers.

Inputs (:class:`Need`) are resolved by :mod:`mpo.artifacts.smk`:

* ``runs`` / ``evals`` / ``warmups`` of an experiment (``evals`` may add the untrained model's: ``zero_shot``);
* ``bench``: benchmarks/update_step.json when a rule makes it;
* ``data``: the prepared datasets' stats.json; ``tokenizer``: models/<first model>/base; ``bases``: every
  configured model's base directory (Tables 4 and 7 read the prepared data and model configs).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Need:
    kind: str  # runs | evals | warmups | bench | data | tokenizer | bases
    experiment: str | None = None
    datasets: tuple[str, ...] | None = None  # restrict an experiment's datasets
    zero_shot: bool = False  # evals: also the untrained model's
    variants: tuple[str, ...] | None = None  # replace the experiment's variants (undefined ones are skipped)


@dataclass(frozen=True)
class Artifact:
    name: str  # output stem: tables/<name>.{md,csv} or figures/<name>.{png,pdf,csv}
    kind: str  # "table" | "figure"
    build: str  # "module:function": table -> (cfg, results) -> Table | Rendered; figure -> (df, meta) -> Figure
    needs: tuple[Need, ...]
    category: str
    subcategory: str
    data: str | None = None  # figures: "module:function" (cfg, results) -> DataFrame
    rule: str = ""  # Snakemake rule name (default: name)
    reference: bool = True  # part of the CI reference sets (False: needs prepared data / model weights)
    groups: tuple[str, ...] = field(default_factory=tuple)

    @property
    def rule_name(self) -> str:
        return self.rule or self.name

    @property
    def experiment(self) -> str | None:
        """The experiment whose runs this artifact reads (its seeds are the ones it reports), None without runs."""
        names = list(dict.fromkeys(n.experiment for n in self.needs if n.experiment))
        if len(names) > 1:
            raise ValueError(f"artifact {self.name!r} reads several experiments {names}: its seeds would be ambiguous")
        return names[0] if names else None

    def builder(self):
        return _resolve(self.build)

    def collector(self):
        if self.data is None:
            raise ValueError(f"artifact {self.name!r} has no data collector")
        return _resolve(self.data)


def _resolve(dotted: str):
    mod, fn = dotted.split(":")
    return getattr(importlib.import_module(mod), fn)


_T, _F = "mpo.artifacts.tables", "mpo.artifacts.figures"
_C = "mpo.artifacts.collect"
_PAPER_T, _PAPER_F, _BEYOND = "Paper tables", "Paper figures", "Beyond the paper"


def _fig(name: str, needs: tuple[Need, ...], category: str, sub: str, groups=()) -> Artifact:
    return Artifact(name, "figure", f"{_F}:{name}", needs, category, sub, data=f"{_C}:{name}_data", groups=tuple(groups))


def _table(name: str, needs: tuple[Need, ...], sub: str, groups=(), category: str = _PAPER_T, **kw) -> Artifact:
    return Artifact(name, "table", f"{_T}:{name}", needs, category, sub, groups=tuple(groups), **kw)


# the `beyond` comparison (mpo.artifacts.tables_beyond.METHODS): the methods of its rows, PPO the paired reference
BEYOND_METHODS = ("grpo", "tempo", "mot_grpo", "ppo", "mpo")
_EFFICIENCY = (Need("runs", "efficiency"), Need("bench"))

ARTIFACTS: list[Artifact] = [
    _table("table1", (Need("evals", "main", ("code",), True),), "Main results", ["main_results"]),
    _fig("fig3", (Need("evals", "main", ("gsm8k", "math"), True),), _PAPER_F, "Main results", ["main_results"]),
    _table("main_comparison", (Need("evals", "main", None, True), Need("runs", "main")), "Main results",
           ["main_results"]),
    _table("table2", _EFFICIENCY, "Efficiency", ["efficiency"]),
    _table("table3", _EFFICIENCY, "Efficiency", ["efficiency"]),
    _table("table4", (Need("data"), Need("tokenizer")), "Datasets", reference=False),
    _table("table5", (), "Hyperparameters"),
    _table("table5a", (Need("evals", "ablation_k"),), "Ablations", ["ablation_k"]),
    _table("table5b", (Need("evals", "ablation_grid"),), "Ablations", ["ablation_grid"]),
    _table("table6", (Need("evals", "value_heads"),), "Ablations", ["value_heads"]),
    _table("table7", (Need("bases"),), "Model size", reference=False),
    _fig("fig4", (Need("runs", "mtp_share"),), _PAPER_F, "Training stability"),
    _fig("fig6", (Need("runs", "mtp_share"), Need("evals", "mtp_share")), _PAPER_F, "Training stability"),
    _fig("fig7", (Need("runs", "mtp_noise"), Need("warmups", "mtp_noise")), _PAPER_F, "MTP noise"),
    _fig("curves", (Need("runs", "curves"),), _BEYOND, "Training curves"),
    _fig("regimes", (Need("runs", "regimes"), Need("evals", "regimes")), _BEYOND, "MTP gradient regimes"),
    _table("beyond", (Need("evals", "beyond"),), "Beyond token-level PPO", ["beyond"],
           category=_BEYOND, rule="beyond_table"),
    _fig("beyond_curves", (Need("runs", "beyond"),), _BEYOND, "Beyond token-level PPO",
         ["beyond"]),
]

BY_NAME: dict[str, Artifact] = {a.name: a for a in ARTIFACTS}
TABLE_NAMES = [a.name for a in ARTIFACTS if a.kind == "table"]
FIGURE_NAMES = [a.name for a in ARTIFACTS if a.kind == "figure"]
ARTIFACT_NAMES = [a.name for a in ARTIFACTS]
REFERENCE_NAMES = [a.name for a in ARTIFACTS if a.reference]


def groups() -> dict[str, list[str]]:
    """Named targets -> their artifacts' rule names, in registry order; ``artifacts`` holds every artifact."""
    out: dict[str, list[str]] = {}
    for a in ARTIFACTS:
        for g in a.groups:
            out.setdefault(g, []).append(a.rule_name)
    out["artifacts"] = [a.rule_name for a in ARTIFACTS]
    return out


def get(name: str) -> Artifact:
    if name not in BY_NAME:
        raise KeyError(f"unknown artifact {name!r} (known: {', '.join(ARTIFACT_NAMES)})")
    return BY_NAME[name]
