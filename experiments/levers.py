"""The levers table: one row per feature or lever tried, scored on validation days only.

Two ways to make it. From one validation report (``evaluate --split valid``) that holds both models of
every row: the paired differences that report computed (its user bootstrap, seed means and ``*`` rule),
with the issue-20 columns: the simulated A/B lift in expected clicks overall and for the lowest activity
bucket (worlds with ground truth), and the AUC and MRR differences overall, on new intents and on the
tail PV tertile::

    python experiments/levers.py --report study/report_valid/report.json --out levers.md \
        --row "candidate-history relations|hgcn_20 -> hgcn_20+rel|hgcn_20|hgcn_20+rel|default"

From two runs that a single report cannot hold (each lever changes the build, for example):

    python experiments/levers.py --out levers.md \
        --row "request features|base_20 without them -> with them|study/runs/base_20-nofeat/seed0|study/runs/base_20/seed0|default" \
        ...

Each ``--row`` is ``name|what changed|BEFORE_RUN|AFTER_RUN|decision``: two finished runs that differ by the
lever, compared on the **validation** predictions each run saved (``predictions/valid.parquet``), never on
test days. Runs may come from different builds (a lever may change the graph) as long as their validation
rows are the same impressions (checked). Columns: validation AUC overall and on the tail tertile of
candidate PV (training impressions; tertile edges from the validation impressions, as ``evaluate
--split valid`` cuts them), each before -> after, and the paired difference with its 95% interval and
``*`` computed by ``evaluate``'s own user bootstrap (``bootstrap.bootstrap_report``: the same Poisson
weights for both runs, the same minimums and significance rule as every report).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

import dropdown_rank  # noqa: F401  (environment before anything imports tensorflow)
from dropdown_rank._io import atomic_path, read_json
from dropdown_rank.evaluate.bootstrap import bootstrap_report
from dropdown_rank.evaluate.markdown import difference_text, lift_cell, oriented, percent_text
from dropdown_rank.evaluate.slices import SliceConfig, pv_edges
from dropdown_rank.train import read_predictions

KEY = ["request_id", "candidate"]


def compare(before: pd.DataFrame, after: pd.DataFrame, rows: dict, replicates: int, seed: int) -> dict:
    """Per bucket of ``rows`` (``{bucket: bool mask}``): both runs' AUC and the paired difference after - before, with
    ``evaluate``'s own user bootstrap, interval and ``*`` rule (``bootstrap.bootstrap_report``)."""
    users = pd.factorize(after["user_id"].to_numpy())[0]
    requests = pd.factorize(after["request_id"].to_numpy())[0]
    report = bootstrap_report(after["label"].to_numpy(), users, {"before": before["prediction"].to_numpy(),
                                                                 "after": after["prediction"].to_numpy()},
                              {"levers": rows}, replicates=replicates, seed=seed, requests=requests, pairs=[("after", "before")])
    out = {}
    for bucket in rows:
        pair = next(p for p in report["pairs"] if p["slice"] == "levers" and p["bucket"] == bucket)
        if "low" not in pair["auc"]:
            raise ValueError(f"{bucket}: too few users or clicks for an interval (bootstrap.py's minimums)")
        out[bucket] = {"before": report["models"]["before"]["levers"][bucket]["auc"]["value"],
                       "after": report["models"]["after"]["levers"][bucket]["auc"]["value"], **pair["auc"]}
    return out


def report_rows(report: dict, rows: list) -> list:
    """Levers-table lines from one report: each row's after - before differences, as the report computed them."""
    first = next(iter(report["model_configs"]))
    activity = next(iter(report["models"][first]["activity"]))
    tail = next(iter(report["models"][first]["pv"]))
    online = report.get("online", {}).get("computed", False)
    header = ["lever", "what changed"]
    header += [f"expected clicks, all (seeds: {len(next(iter(report['seeds'].values())))})", f"expected clicks, activity {activity}"] \
        if online else []
    header += ["ΔAUC all", "ΔMRR all", "ΔAUC new intent", "ΔMRR new intent", f"ΔAUC {tail}", "decision"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        name, changed, before, after, decision = row.split("|")
        for model in (before, after):
            if model not in report["models"]:
                raise ValueError(f"{model} is not in the report (its models: {', '.join(report['model_configs'])})")
        cells = [percent_text(lift_cell(report, "all", "all", after, before), 2), percent_text(lift_cell(report, "activity", activity, after, before), 2)] \
            if online else []
        cells += [difference_text(oriented(report, "all", "all", after, before, "auc")), difference_text(oriented(report, "all", "all", after, before, "mrr")),
                  difference_text(oriented(report, "request_kind", "new intent", after, before, "auc")),
                  difference_text(oriented(report, "request_kind", "new intent", after, before, "mrr")),
                  difference_text(oriented(report, "pv", tail, after, before, "auc"))]
        lines.append(f"| {name} | {changed} | " + " | ".join(cells) + f" | {decision} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", action="append", required=True,
                        help="name|what changed|BEFORE|AFTER|decision: BEFORE/AFTER are run directories, or model names with --report")
    parser.add_argument("--report", type=Path, help="a validation report.json holding every row's two models")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--replicates", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.report:
        report = read_json(args.report)
        if report.get("split") != "valid":
            raise ValueError(f"{args.report} describes the {report.get('split', 'test')} days; levers are chosen on validation days")
        lines = report_rows(report, args.row)
        print("\n".join(lines))
        with atomic_path(args.out) as tmp:
            Path(tmp).write_text("\n".join(lines) + "\n")
        return
    lines = ["| lever | what changed | val AUC (before -> after) | Δ [95%] | val AUC tail tertile | Δ tail [95%] | decision |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in args.row:
        name, changed, before_dir, after_dir, decision = row.split("|")
        before, after = read_predictions(before_dir, "valid"), read_predictions(after_dir, "valid")
        if len(before) != len(after) or not (before[KEY].to_numpy() == after[KEY].to_numpy()).all():
            raise ValueError(f"{before_dir} and {after_dir}: not the same validation impressions")
        pv = after["candidate_pv"].to_numpy()
        tail = pv < pv_edges(pv, SliceConfig())[0]
        cells = []
        for c in compare(before, after, {"all": np.ones(len(after), bool), "tail": tail}, args.replicates, args.seed).values():
            star = " *" if c["significant"] else ""
            cells += [f"{c['before']:.4f} -> {c['after']:.4f}", f"{c['value']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}]{star}"]
        lines.append(f"| {name} | {changed} | " + " | ".join(cells) + f" | {decision} |")
        print(lines[-1])
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
