"""``report.md``: the report's tables in Markdown, with significance marks."""
from __future__ import annotations

ORACLE = "oracle"


def _ci(cell: dict | None, digits: int = 4) -> str:
    if not cell or "value" not in cell:
        return "n/a"
    return f"{cell['value']:.{digits}f} [{cell['low']:.{digits}f}, {cell['high']:.{digits}f}]"


def _diff(cell: dict | None, digits: int = 4) -> str:
    if not cell:
        return "n/a"
    mark = " *" if cell["significant"] else ""
    return f"{cell['value']:+.{digits}f} [{cell['low']:+.{digits}f}, {cell['high']:+.{digits}f}]{mark}"


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def _pairs(report: dict, slice_name: str, bucket: str):
    return [p for p in report["pairs"] if p["slice"] == slice_name and p["bucket"] == bucket]


def _oriented(report: dict, slice_name: str, bucket: str, a: str, b: str, metric: str = "auc") -> dict | None:
    """The (a - b) difference, whichever order the pair was computed in."""
    for p in _pairs(report, slice_name, bucket):
        if (p["a"], p["b"]) == (a, b):
            return p[metric]
        if (p["a"], p["b"]) == (b, a):
            cell = p[metric]
            return {"value": -cell["value"], "low": -cell["high"], "high": -cell["low"], "significant": cell["significant"]}
    return None


def _focus_pairs(report: dict) -> list:
    """Model-vs-model pairs worth a per-slice table: each GNN against each base model."""
    configs = report["model_configs"]
    gnn = [m for m, c in configs.items() if c["kind"] != "base"]
    base = [m for m, c in configs.items() if c["kind"] == "base"]
    return [(a, b) for a in gnn for b in base]


def render(report: dict) -> str:
    models = list(report["models"])
    lines = ["# dropdown_rank evaluation report", ""]
    test = report["test_period"]
    overall = report["models"][models[0]]["all"]["all"]
    boot = report["bootstrap"]
    lines += [
        f"- Work directory: `{report['work']}`; test period {test['test_start_iso']} to {test['test_end_iso']}.",
        f"- Test split: {overall['impressions']:,} impressions, {overall['clicks']:,} clicks, {overall['users']:,} users.",
        f"- Intervals: 95% percentile intervals from {boot['replicates']} Poisson bootstrap replicates over **users** "
        f"(seed {boot['seed']}); differences are paired (same replicates for every model). "
        "`*` marks a difference whose interval excludes 0.",
        f"- Slices: user activity = behaviors in the look-back window, edges {report['slices']['activity_edges']}; "
        f"candidate PV = training-period impressions, edges {report['slices']['pv_edges']} "
        f"({report['slices']['pv_edges_from']}).",
    ]
    if ORACLE in models:
        lines.append("- `oracle` scores each impression with its true click probability (synthetic world): the ceiling "
                     "any model can reach. It includes the position effect, which the rankers do not see at serving time.")
    lines += ["", "## Overall", "", "| model | AUC | GAUC | logloss | distance to oracle (AUC) |", "| --- | --- | --- | --- | --- |"]
    to_oracle = {p["b"]: p["auc"] for p in _pairs(report, "all", "all") if p["a"] == ORACLE}
    for m in models:
        cell = report["models"][m]["all"]["all"]
        lines.append(f"| {m} | {_ci(cell.get('auc'))} | {_ci(cell.get('gauc'))} | {_ci(cell.get('logloss'))} | "
                     f"{_diff(to_oracle.get(m)) if m != ORACLE else '-'} |")
    lines += ["", "### Paired differences, overall (a - b)", "", "| a | b | ΔAUC | ΔGAUC | Δlogloss |", "| --- | --- | --- | --- | --- |"]
    listed = set()
    for a, b in _focus_pairs(report) + [(p["a"], p["b"]) for p in _pairs(report, "all", "all") if p["a"] != ORACLE]:
        if frozenset((a, b)) not in listed:
            listed.add(frozenset((a, b)))
            lines.append(f"| {a} | {b} | " + " | ".join(_diff(_oriented(report, "all", "all", a, b, m)) for m in ("auc", "gauc", "logloss")) + " |")

    titles = {"activity": "By user activity", "pv": "By candidate query PV"}
    for slice_name, title in titles.items():
        buckets = list(report["models"][models[0]][slice_name])
        lines += ["", f"## {title}", "", "AUC [95% interval] per bucket.", "",
                  "| bucket | impressions | clicks | " + " | ".join(models) + " |",
                  "| --- | --- | --- | " + " | ".join("---" for _ in models) + " |"]
        for b in buckets:
            first = report["models"][models[0]][slice_name][b]
            lines.append(f"| {b} | {first['impressions']:,} | {first['clicks']:,} | "
                         + " | ".join(_ci(report["models"][m][slice_name][b].get("auc")) for m in models) + " |")
        focus = _focus_pairs(report)
        if focus:
            lines += ["", "ΔAUC (a - b) per bucket:", "", "| bucket | " + " | ".join(f"{a} - {b}" for a, b in focus) + " |",
                      "| --- | " + " | ".join("---" for _ in focus) + " |"]
            for b in buckets:
                lines.append(f"| {b} | " + " | ".join(_diff(_oriented(report, slice_name, b, x, y)) for x, y in focus) + " |")
        lines += ["", f"![AUC {title.lower()}]({report['plots']['auc_by_' + slice_name]})"]

    storage = report.get("storage")
    if storage:
        measured = storage["measured"]
        base_50 = next((s["total_bytes"] for m, s in storage["models"].items() if report["model_configs"][m]["kind"] == "base"
                        and report["model_configs"][m]["seq_len"] == 50), None)
        lines += ["", "## Storage of the training data (bytes measured on written files)", "",
                  f"{measured['train_examples']:,} training examples. Sequences are Parquet (snappy); neighbor tables "
                  "are compressed `.npz`, counted once; vocabularies are needed by every model.", "",
                  "| model | sequences | neighbor tables | vocabularies | total | bytes/example | vs base_50 |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for m, s in storage["models"].items():
            parts = s["parts"]
            share = f"{100 * s['total_bytes'] / base_50:.0f}%" if base_50 else "n/a"
            lines.append(f"| {m} | {_mb(parts['sequences'])} | {_mb(parts.get('neighbor_tables', 0))} | {_mb(parts['vocabularies'])} | "
                         f"{_mb(s['total_bytes'])} | {s['bytes_per_example']:.1f} | {share} |")
        inline = next((s["if_neighbors_in_every_example"] for s in storage["models"].values() if "if_neighbors_in_every_example" in s), None)
        if inline:
            share = f"{100 * inline['total_bytes'] / base_50:.0f}%" if base_50 else "n/a"
            lines.append(f"| GNN_20 with neighbors written into every example | - | - | - | {_mb(inline['total_bytes'])} | "
                         f"{inline['bytes_per_example']:.1f} | {share} |")
        if "storage_vs_auc" in report["plots"]:
            lines += ["", f"![storage against AUC]({report['plots']['storage_vs_auc']})"]

    for name, profile in report.get("attention_profiles", {}).items():
        lines += ["", f"## Attention in {name}", "",
                  "Mean target-attention weight by history position (1 = most recent) and mean graph-attention weight "
                  "by neighbor rank (0 = the node itself), over positions and neighbors that exist.", "",
                  f"![attention {name}]({report['plots']['attention_' + name]})"]
    lines += ["", f"Report generated in {report['seconds']:.0f}s (bootstrap {boot['seconds']:.1f}s).", ""]
    return "\n".join(lines)
