"""``report.md``: the report's tables in Markdown, with significance marks."""
from __future__ import annotations

import re

import numpy as np

from dropdown_rank.evaluate.bootstrap import FAMILY_ALPHA

ORACLE = "oracle"
RELEVANCE = "relevance oracle"
LEGACY = "legacy order"
PERSONAL = "personal count, then position"
CONSTANT = "constant CTR"
RANDOM = "random order"
FROZEN = "(frozen graph)"
PAL_SUFFIX = re.compile(r"\+pal(?:[0-9.e+]+x)?(?=-|$)")  # ModelConfig.name's "+pal" or "+pal<multiplier>x"
WITH_POSITION = "(logged position)"  # a PAL model's training-time prediction: examination of the logged position x ranker
METRIC_TITLES = {"auc": "AUC", "gauc": "GAUC", "logloss": "logloss", "mrr": "MRR", "ndcg@10": "NDCG@10"}
RANKING_METRICS = ("auc", "gauc", "mrr", "ndcg@10")
BASELINE_LABEL = {LEGACY: "legacy order (baseline)", PERSONAL: "personal count, then position (baseline)",
                  CONSTANT: "constant CTR (baseline)", ORACLE: "oracle (ceiling)", RELEVANCE: "relevance oracle (ceiling)",
                  RANDOM: "random order (baseline)"}
# Reference scorers in table order. The constant CTR is left out of ranking tables: it ranks nothing (AUC 0.5).
REFERENCES = (LEGACY, PERSONAL, CONSTANT, RANDOM, ORACLE, RELEVANCE)
ONLINE_SCORERS = (LEGACY, PERSONAL, RANDOM, ORACLE, RELEVANCE)  # the references of the simulated A/B test, in table order
# Slices of whole requests that do not depend on the logged clicks: the ones with per-request expected clicks. Request kind
# holds whole requests too, but it is defined by the clicks the legacy order got, so a lift within it would be conditioned
# on the legacy order's own outcome.
ONLINE_SLICES = ("all", "activity")
WHY_ONLINE_DIFFERS = (
    "Why the two can disagree: logged clicks were produced by the legacy order, and a candidate shown first is clicked more "
    "because it is first, so logged-click AUC and MRR reward a ranker for agreeing with the legacy positions. Expected clicks "
    "re-rank each request and ask the world's click model what each order would have earned, with no position bias.")
RANKING_REFERENCES = (LEGACY, PERSONAL, ORACLE, RELEVANCE)
SLICE_TITLES = {"activity": "By user activity", "request_kind": "By request kind (repeat or new intent)",
                "candidate_novelty": "By candidate novelty to the user",
                "freshness": "By candidate freshness (when it entered the query vocabulary)", "pv": "By candidate query PV (its training-period dropdown impressions)",
                "degree": "By candidate neighbor degree"}
# The splits a report can describe, as the text names their days. Model choices are made on ``valid``, never on ``test``.
SPLIT_LABEL = {"test": "test", "valid": "validation"}


def split_of(report: dict) -> tuple[str, str]:
    """The report's split and how the text names it; reports written before the key existed are test reports."""
    split = report.get("split", "test")
    return split, SPLIT_LABEL[split]


def _too_few(cell: dict) -> str:
    return cell["too_few"] if isinstance(cell.get("too_few"), str) else "too few users/clicks"


def _ci(cell: dict | None, digits: int = 4) -> str:
    if not cell or "value" not in cell:
        return "n/a"
    if "low" not in cell:
        return f"{cell['value']:.{digits}f} ({_too_few(cell)})"
    return f"{cell['value']:.{digits}f} [{cell['low']:.{digits}f}, {cell['high']:.{digits}f}]"


def difference_text(cell: dict | None, digits: int = 4) -> str:
    if not cell:
        return "n/a"
    if "low" not in cell:
        return f"{cell['value']:+.{digits}f} ({_too_few(cell)})"
    return f"{cell['value']:+.{digits}f} [{cell['low']:+.{digits}f}, {cell['high']:+.{digits}f}]{_marks(cell)}"


def _marks(cell: dict) -> str:
    """`` *`` by the per-cell rule, ``†`` too when it survives the family's Holm correction (reports written before it:
    ``*`` alone)."""
    return (" *" if cell.get("significant") else "") + ("†" if cell.get("significant_holm") else "")


def _spread(cell: dict | None, digits: int = 4) -> str:
    if not cell:
        return "n/a"
    if cell.get("sd") is None:
        return "one seed"
    return f"{cell['min']:.{digits}f}-{cell['max']:.{digits}f}, sd {cell['sd']:.{digits}f}"


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def _label(name: str) -> str:
    return BASELINE_LABEL.get(name, name)


def oriented(report: dict, slice_name: str, bucket: str, a: str, b: str, metric: str = "auc") -> dict | None:
    """The (a - b) difference, whichever order the pair was computed in."""
    for p in report["pairs"]:
        if p["slice"] != slice_name or p["bucket"] != bucket or metric not in p:
            continue
        if (p["a"], p["b"]) == (a, b):
            return p[metric]
        if (p["a"], p["b"]) == (b, a):
            cell = dict(p[metric])
            cell["value"] = -cell["value"]
            if "low" in cell:
                cell["low"], cell["high"] = -cell["high"], -cell["low"]
            return cell
    return None


def _focus_pairs(report: dict) -> list:
    """Pairs worth a per-bucket table: each GNN against each base model; each +pal model against its plain twin."""
    configs = report["model_configs"]
    plain = [m for m, c in configs.items() if not c.get("position_bias")]
    gnn = [m for m in plain if configs[m]["kind"] != "base"]
    base = [m for m in plain if configs[m]["kind"] == "base"]
    twins = {m: PAL_SUFFIX.sub("", m) for m, c in configs.items() if c.get("position_bias")}
    pal = [(m, twin) for m, twin in twins.items() if twin in configs]
    return [(a, b) for a in gnn for b in base] + pal


def _header(report: dict) -> list:
    models = list(report["model_configs"])
    split, label = split_of(report)
    period, boot = report[f"{split}_period"], report["bootstrap"]
    overall = report["models"][models[0]]["all"]["all"]
    seeds = report["seeds"]
    minimums = boot["minimums"]
    one_seed = all(len(s) == 1 for s in seeds.values())
    lines = [
        f"- Work directory: `{report['work']}`; {label} period {period[f'{split}_start_iso']} to {period[f'{split}_end_iso']}.",
        *([] if split == "test" else
          [f"- Split: **{split}** ({label} days, where model choices are made). Every table, baseline, slice and OOV share "
           "below is of these days; no test day is read.",
           *_in_sample(report)]),
        f"- {label.capitalize()} split: {overall['impressions']:,} impressions, {overall['clicks']:,} clicks, {overall['users']:,} users, "
        f"{overall['requests']:,} requests ({overall['clicked_requests']:,} with a click; the "
        f"{overall['requests_without_click']:,} without one are excluded from MRR and NDCG@10).",
        *_calibration_line(report),
        *([f"- Read another build's graph (the same samples and vocabularies; `[graph ...]` names the settings that differ): "
           + ", ".join(f"{m} (`{d}`)" for m, d in report["other_graph_builds"].items())
           + ". The degree slice and the storage section are left out: both would describe this work's graph."]
          if report.get("other_graph_builds") else []),
        "- Training seeds: " + "; ".join(f"{m} (seed{'s' if len(seeds[m]) > 1 else ''} {', '.join(str(s) for s in seeds[m])})"
                                         for m in models) + ". "
        + ("**One seed per model**: training-seed variance is not measured, and condition 3 below is the sign of the single "
           "difference." if one_seed else
           "A model's value is the **mean over its seeds** of the metric; the seed spread table gives min-max and sd."),
        f"- Intervals: 95% percentile intervals from {boot['replicates']} Poisson bootstrap replicates over **users** "
        f"(seed {boot['seed']}), the same replicate weights for every model, seed and baseline; a model's replicate is the mean "
        "of its seeds' replicates.",
        f"- `*` marks a difference a - b only when (1) the slice has at least {minimums['users_with_click']} users with a click and "
        f"{minimums['non_clicks']} non-clicked impressions, (2) the 95% interval of the seed-averaged paired difference excludes 0, "
        "and (3) every seed of a differs from every seed of b in that same direction (daily vs frozen graph: each seed against "
        "itself). Below the minimums a cell shows its point value and \"too few users/clicks\", never an interval or a `*`.",
        *([f"- `*†`: the difference also survives a Holm-Bonferroni correction at {FAMILY_ALPHA:.0%} over its **family**, every cell "
           "of that pair in this report (each slice bucket and metric with an interval; `family_size` in report.json), with a "
           "two-sided p from the bootstrap standard error (`holm_p` in report.json; a normal approximation, so with skewed "
           "replicates it can disagree with the percentile interval behind `*` even in a family of one). The interval shown is "
           "uncorrected. A `*` without `†` is a lead to test on other days, not a claim."]
          if any("holm_p" in cell for row in report["pairs"] for cell in row.values() if isinstance(cell, dict)) else []),
        "- MRR and NDCG@10: per request with a click, binary gains, candidates ranked by score within the request (ties: "
        "non-clicked first, i.e. pessimistic). A slice keeps its clicked candidates; ranks are within the whole request.",
        "- Baselines, not models: " + "; ".join(f"`{b}`: {d}" for b, d in report["baselines"].items()) + ".",
        *(f"- Baseline `{b}` not scored: {why}." for b, why in report.get("baselines_skipped", {}).items()),
        f"- Slices: user activity = behaviors in the look-back window, edges {report['slices']['activity_edges']}"
        + (f" ({report['slices']['activity_edges_from']})" if report["slices"].get("activity_edges_from", "fixed") != "fixed" else "")
        + "; request kind = `repeat` when a clicked candidate is a query the user issued before the request (in the "
        "`user_candidate_count` window), `new intent` when the request has a click and none of its clicked candidates was, "
        "`no click` otherwise; candidate novelty = the impression's candidate issued by the user before or not; "
        + (f"candidate freshness = the candidate outside the build's query vocabulary (training period; or known only after the "
           f"request), in it for less than {report['slices']['fresh_days']} days before the request (`known_since`, the day after "
           "its `min_count`-th occurrence), or known longer; " if "fresh_days" in report["slices"] else "")
        + 
        f"candidate PV = training-period impressions, edges {report['slices']['pv_edges']} ({report['slices']['pv_edges_from']})"
        + (f"; candidate neighbor degree = real q2q neighbors of the candidate in the snapshot its row reads (K = "
           f"{report['slices']['degree_neighbors']}), edges {report['slices']['degree_edges']}" if "degree_edges" in report["slices"] else "")
        + ".",
    ]
    return lines


def _in_sample(report: dict) -> list:
    """Which of a validation report's numbers were fitted on its days (reports written before ``in_sample``: all runs')."""
    if "in_sample" not in report:  # written before the report recorded it: every run chose its epoch and calibrated here
        return ["- **In-sample on these days**: each run's epoch was chosen and its Platt calibration fitted on them (the "
                "report predates the per-model record), so the models' ranking metrics and logloss here are in-sample."]
    fitted = report["in_sample"]
    if not fitted or not (fitted["epoch_chosen"] or fitted["calibrated"]):
        return []
    parts = []
    if fitted["epoch_chosen"]:
        parts.append(f"the epoch of {', '.join(fitted['epoch_chosen'])} was chosen on them (early stopping and the best "
                     "checkpoint, by exact AUC), so their AUC, GAUC, MRR and NDCG@10 here are in-sample for that choice")
    if fitted["calibrated"]:
        parts.append(f"the Platt calibration of {', '.join(fitted['calibrated'])} was fitted on them, so their logloss here is "
                     "in-sample")
    return ["- **In-sample on these days**: " + "; ".join(parts) + ". The baselines are not fitted here; the test report has "
            "no in-sample number."]


def _calibration_line(report: dict) -> list:
    """The constant CTR's logloss, the bar every calibrated model clears, in one line (none when not scored)."""
    cell = report["models"].get(CONSTANT, {}).get("all", {}).get("all", {}).get("logloss")
    if not cell:
        return []
    rate = report["constant_ctr"]
    return [f"- Calibration: constant CTR (train click rate p={rate['train_click_rate']:.4f}, over {rate['train_impressions']:,} "
            f"training impressions) logloss {_ci(cell)}; a model worse than this is not calibrated."]


def _overall(report: dict) -> list:
    models = list(report["model_configs"])
    baselines = [b for b in REFERENCES if b in report["models"]]
    seeds = report["seeds"]
    metrics = list(METRIC_TITLES)
    cell = lambda m, k: report["models"][m]["all"]["all"].get(k)  # noqa: E731
    lines = ["", "## Overall", "", "Seed mean [95% interval].", "",
             "| model | seeds | " + " | ".join(METRIC_TITLES.values()) + " |", "| --- | --- |" + " --- |" * len(metrics)]
    for m in models:
        lines.append(f"| {m} | {len(seeds[m])} | " + " | ".join(_ci(cell(m, k)) for k in metrics) + " |")
    for b in baselines:
        # Every constant-CTR candidate ties: its MRR and NDCG@10 would only measure the pessimistic tie rule.
        lines.append(f"| {_label(b)} | - | " + " | ".join("n/a (all tied)" if b == CONSTANT and k in ("mrr", "ndcg@10") else _ci(cell(b, k))
                                                         for k in metrics) + " |")
    if any(len(s) > 1 for s in seeds.values()):
        lines += ["", "### Spread across training seeds (min-max, sd)", "",
                  "| model | seeds | " + " | ".join(METRIC_TITLES.values()) + " |", "| --- | --- |" + " --- |" * len(metrics)]
        for m in models:
            lines.append(f"| {m} | {', '.join(str(s) for s in seeds[m])} | " + " | ".join(_spread(cell(m, k)) for k in metrics) + " |")

    ceilings = [c for c in (ORACLE, RELEVANCE) if c in baselines]
    constant = CONSTANT in baselines
    header = [f"Δ{METRIC_TITLES[k]} vs legacy" for k in RANKING_METRICS] + [f"{c} - model (AUC)" for c in ceilings]
    header += ["Δlogloss vs constant CTR"] if constant else []
    lines += ["", "### Against the baselines", "",
              "Model - legacy order" + (", the distance from each ceiling to the model (AUC)" if ceilings else "")
              + (", and model - constant CTR in logloss (below 0: the model's probabilities beat the training click rate)"
                 if constant else "") + ".", "",
              "| model | " + " | ".join(header) + " |", "| --- |" + " --- |" * len(header)]
    for m in models:
        row = [difference_text(oriented(report, "all", "all", m, LEGACY, k)) for k in RANKING_METRICS]
        row += [difference_text(oriented(report, "all", "all", c, m)) for c in ceilings]
        row += [difference_text(oriented(report, "all", "all", m, CONSTANT, "logloss"))] if constant else []
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    if PERSONAL in baselines:
        header = [f"Δ{METRIC_TITLES[k]} vs personal count" for k in RANKING_METRICS]
        lines += ["", "### Against the personal count", "",
                  "Model - personal count, then position (the user's own past queries of the candidate first, then the legacy "
                  "order): what the model adds over the simplest personal heuristic.", "",
                  "| model | " + " | ".join(header) + " |", "| --- |" + " --- |" * len(header)]
        for m in models:
            lines.append(f"| {m} | " + " | ".join(difference_text(oriented(report, "all", "all", m, PERSONAL, k)) for k in RANKING_METRICS) + " |")

    lines += ["", "### Paired differences between models, overall (a - b)", "",
              "| a | b | " + " | ".join(f"Δ{t}" for t in METRIC_TITLES.values()) + " |", "| --- | --- |" + " --- |" * len(metrics)]
    listed = set()
    for a, b in _focus_pairs(report) + [(x, y) for i, x in enumerate(models) for y in models[i + 1:]]:
        if frozenset((a, b)) not in listed:
            listed.add(frozenset((a, b)))
            lines.append(f"| {a} | {b} | " + " | ".join(difference_text(oriented(report, "all", "all", a, b, k)) for k in metrics) + " |")

    frozen = report.get("frozen_graph", [])
    if frozen:
        _, label = split_of(report)
        lines += ["", "### Daily graph snapshots against one frozen snapshot (GNN runs)", "",
                  f"{label.capitalize()} AUC with each {label} day's own graph snapshot (the default) and with the first test day's "
                  f"snapshot for every {label} day (what an export made at the end of training serves unless its graph is refreshed). The "
                  "difference is paired per seed (same weights, two graphs).", "",
                  "| model | seeds | AUC, daily snapshots | AUC, frozen snapshot | daily - frozen |", "| --- | --- | --- | --- | --- |"]
        for m in frozen:
            name = f"{m} {FROZEN}"
            lines.append(f"| {m} | {len(seeds[m])} | {_ci(cell(m, 'auc'))} | {_ci(report['models'][name]['all']['all'].get('auc'))} | "
                         f"{difference_text(oriented(report, 'all', 'all', m, name))} |")
    return lines


def percent_text(cell: dict | None, digits: int = 1) -> str:
    """A relative cell (lift or share) in percent, with its interval and ``*`` where it has them."""
    if not cell or "value" not in cell:
        return "n/a"
    if "low" not in cell:
        return f"{100 * cell['value']:+.{digits}f}%" + (f" ({_too_few(cell)})" if cell.get("too_few") else "")
    return f"{100 * cell['value']:+.{digits}f}% [{100 * cell['low']:+.{digits}f}%, {100 * cell['high']:+.{digits}f}%]{_marks(cell)}"


def lift_cell(report: dict, slice_name: str, bucket: str, a: str, b: str = LEGACY) -> dict | None:
    """The expected-click lift a / b - 1, whichever order the pair was computed in."""
    for p in report["pairs"]:
        if (p["slice"], p["bucket"]) != (slice_name, bucket) or "expected_clicks_lift" not in p:
            continue
        if (p["a"], p["b"]) == (a, b):
            return p["expected_clicks_lift"]
        if (p["a"], p["b"]) == (b, a):
            cell, inverse = dict(p["expected_clicks_lift"]), lambda x: 1.0 / (1.0 + x) - 1.0  # noqa: E731
            cell["value"] = inverse(cell["value"])
            if "low" in cell:
                cell["low"], cell["high"] = inverse(cell["high"]), inverse(cell["low"])
            return cell
    return None


def _online(report: dict) -> list:
    online = report.get("online")
    if not online:
        return []
    lines = ["", "## Online: the simulated A/B test", ""]
    if not online["computed"]:
        return lines + [f"Not computed: {online['why']}."]
    models = list(report["model_configs"])
    scorers = models + [b for b in ONLINE_SCORERS if b in report["models"]]
    factor = ", ".join(f"{f:.3f}" for f in online["position_factor"][:5])
    lines += [
        "Each request's candidates are re-ranked by each scorer and the order is scored with the world's own click model: "
        f"expected clicks = sum of p_relevance x f(new position), with f read off the truth (f = {factor}, ... for positions "
        "0, 1, 2, ...). CTR@1 is the expected click on the first suggestion. Lift is over the legacy order; the oracle's share "
        "is (scorer - legacy) / (relevance oracle - legacy), the share of the available lift captured. Intervals and `*` as "
        "above (the same user bootstrap, paired), except that a bucket needs 30 users with a request, not 30 with a click. "
        "Request kind is not a slice here: it is defined by the clicks the legacy order got. " + WHY_ONLINE_DIFFERS, "",
        "| scorer | expected clicks / request | CTR@1 | lift vs legacy | share of the oracle's lift | logged-click AUC |",
        "| --- | --- | --- | --- | --- | --- |"]
    for m in scorers:
        entry = report["models"][m]["all"]["all"]
        lift = "-" if m == LEGACY else percent_text(lift_cell(report, "all", "all", m))
        share = "-" if m in (LEGACY, RELEVANCE) else percent_text(entry.get("oracle_share"))
        lines.append(f"| {_label(m)} | {_ci(entry.get('expected_clicks'))} | {_ci(entry.get('ctr@1'))} | {lift} | {share} | "
                     f"{_ci(entry.get('auc'))} |")
    for slice_name in ONLINE_SLICES[1:]:
        if slice_name not in report["models"][models[0]]:
            continue
        buckets = [b for b, e in report["models"][models[0]][slice_name].items() if "expected_clicks" in e]
        requests = ", ".join(f"{b} {report['models'][models[0]][slice_name][b]['requests']:,}" for b in buckets)
        lines += ["", f"{SLICE_TITLES[slice_name]}: expected-click lift over the legacy order, and the share of the oracle's "
                  f"lift (requests: {requests}).", "",
                  "| scorer | " + " | ".join(buckets) + " |", "| --- |" + " --- |" * len(buckets)]
        for m in scorers:
            if m == LEGACY:
                continue
            lines.append(f"| {_label(m)} | " + " | ".join(percent_text(lift_cell(report, slice_name, b, m)) for b in buckets) + " |")
        for m in models:
            lines.append(f"| {m}: share of the oracle's lift | " + " | ".join(
                percent_text(report["models"][m][slice_name][b].get("oracle_share")) for b in buckets) + " |")
    pairs = _focus_pairs(report)
    if pairs:
        cells = [(s, b) for s in ONLINE_SLICES for b in report["models"][models[0]].get(s, {})
                 if "expected_clicks" in report["models"][models[0]][s][b]]
        lines += ["", "Paired model differences in expected clicks (a / b - 1):", "",
                  "| a / b - 1 | " + " | ".join(b if s == "all" else f"{s}: {b}" for s, b in cells) + " |",
                  "| --- |" + " --- |" * len(cells)]
        for a, b in pairs:
            lines.append(f"| {a} / {b} | " + " | ".join(percent_text(lift_cell(report, s, k, a, b), 2) for s, k in cells) + " |")
    if "online_lift_by_activity" in report.get("plots", {}):
        lines += ["", f"![expected-click lift by activity]({report['plots']['online_lift_by_activity']})"]
    return lines


def _oov_table(report: dict, slice_name: str, buckets: list) -> list:
    groups = report.get("oov") or []
    if not groups:
        return []
    vocabularies = list(dict.fromkeys(g["vocabulary"] for g in groups))
    several = len(vocabularies) > 1
    header, columns = [], []
    for v in vocabularies:
        members = [g for g in groups if g["vocabulary"] == v]
        tag = f" ({', '.join(m for g in members for m in g['models'])})" if several else ""
        header += [f"user{tag}", f"candidate{tag}"]
        columns += [(members[0], "user"), (members[0], "candidate")]
        for g in members:
            header.append(f"history L={g['seq_len']}{tag}")
            columns.append((g, "history"))
    lines = ["", "Out-of-vocabulary share of impressions: the user, the candidate, or any of the first L query/item "
             "history ids is not in the run's vocabulary.", "",
             "| bucket | " + " | ".join(header) + " |", "| --- |" + " --- |" * len(header)]
    for b in buckets:
        cells = [g["shares"][slice_name][b][k] for g, k in columns]
        lines.append(f"| {b} | " + " | ".join("n/a" if c is None else f"{100 * c:.2f}%" for c in cells) + " |")
    return lines


def _slice_section(report: dict, slice_name: str, title: str) -> list:
    models = list(report["model_configs"])
    scorers = models + [b for b in RANKING_REFERENCES if b in report["models"]]
    buckets = list(report["models"][models[0]][slice_name])
    counts = [report["models"][models[0]][slice_name][b] for b in buckets]
    lines = ["", f"## {title}", "",
             "| bucket | impressions | clicks | users | users with a click | requests with a click | requests without |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for b, c in zip(buckets, counts):
        lines.append(f"| {b} | {c['impressions']:,} | {c['clicks']:,} | {c['users']:,} | {c['users_with_click']:,} | "
                     f"{c['clicked_requests']:,} | {c['requests_without_click']:,} |")
    lines += _oov_table(report, slice_name, buckets)
    for metric in RANKING_METRICS:
        lines += ["", f"{METRIC_TITLES[metric]} per bucket (seed mean [95% interval]):", "",
                  "| model | " + " | ".join(buckets) + " |", "| --- |" + " --- |" * len(buckets)]
        for m in scorers:
            lines.append(f"| {_label(m)} | " + " | ".join(_ci(report["models"][m][slice_name][b].get(metric)) for b in buckets) + " |")
    rows = _focus_pairs(report) + [(m, b) for b in (LEGACY, PERSONAL) if b in report["models"] for m in models]
    for metric in ("auc", "ndcg@10"):
        lines += ["", f"Δ{METRIC_TITLES[metric]} (a - b) per bucket:", "", "| a - b | " + " | ".join(buckets) + " |",
                  "| --- |" + " --- |" * len(buckets)]
        for a, b in rows:
            lines.append(f"| {a} - {b} | " + " | ".join(difference_text(oriented(report, slice_name, k, a, b, metric)) for k in buckets) + " |")
    lines += ["", f"![AUC {title.lower()}]({report['plots']['auc_by_' + slice_name]})"]
    return lines


def _storage(report: dict) -> list:
    storage = report.get("storage")
    if not storage:
        return []
    measured = storage["measured"]
    configs = report["model_configs"]
    base_50 = next((s["total_bytes"] for m, s in storage["models"].items() if configs[m]["kind"] == "base" and configs[m]["seq_len"] == 50), None)
    snapshots = measured.get("graph_snapshots")
    if isinstance(snapshots, dict):
        snapshots = ", ".join(f"{r} {n}" for r, n in snapshots.items())
    held = f", holding {snapshots} daily snapshots (stats.json)" if snapshots else ""
    row_features = measured.get("row_features")
    features = f", and the per-row features {', '.join(f'`{c}`' for c in row_features)}" if row_features else \
        " (no per-row features: the samples hold none)"
    lines = ["", "## Storage of the training data (bytes measured on written files)", "",
             f"{measured['train_examples']:,} training examples. Sample rows are Parquet (snappy): ids, position, label, "
             f"histories cut to the model's L{features}; neighbor tables are the work directory's compressed `graph/*.npz` "
             f"files, counted once{held}; vocabularies are needed by every model.", "",
             "| model | sample rows | neighbor tables | vocabularies | total | bytes/example | vs base_50 |",
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
    return lines


def _position_bias(report: dict) -> list:
    """The PAL towers' learned examination against the world's, and each PAL model scored with its logged position."""
    bias = report.get("position_bias")
    if not bias:
        return []
    models, world = list(bias["models"]), bias["world"]
    relative = {m: np.array([np.asarray(c) / c[0] for c in bias["models"][m]["per_seed"]]) for m in models}
    lines = ["", "## Position bias (PAL)", "",
             "P(seen | position) of each PAL model's position tower relative to position 0 (mean over seeds, min-max in "
             "brackets)" + (", against the world's position factor `(1 + p)^-decay` relative to position 0" if world else "")
             + f". ![learned examination]({report['plots']['position_examination']})", "",
             "| position |" + (" world |" if world else "") + "".join(f" {m} |" for m in models),
             "| --- |" + (" --- |" if world else "") + " --- |" * len(models)]
    for p in range(bias["positions"]):
        row = f"| {p} |" + (f" {world[p] / world[0]:.3f} |" if world else "")
        row += "".join(f" {relative[m][:, p].mean():.3f} [{relative[m][:, p].min():.3f}, {relative[m][:, p].max():.3f}] |" for m in models)
        lines.append(row)
    if world:
        gaps = ", ".join(f"{m} {np.abs(relative[m].mean(axis=0) - np.asarray(world) / world[0]).max():.3f}" for m in models)
        lines += ["", f"Largest gap between the seed-mean curve and the world's, over positions: {gaps}."]
    logged = [m for m in models if f"{m} {WITH_POSITION}" in report["models"]]
    if logged and LEGACY in report["models"]:
        cell = lambda m, k: report["models"][m]["all"]["all"].get(k)  # noqa: E731
        lines += ["", "Logged-click metrics on equal terms with the legacy order: `(logged position)` is what the PAL model "
                  "was trained to predict for the logged list, P(seen | logged position) x the ranker's P(click | seen); "
                  "the position-free score is what it serves.", "",
                  "| model | AUC, position-free | AUC, logged position | logged position - legacy order (AUC) | "
                  "MRR, logged position | logged position - legacy order (MRR) |", "| --- | --- | --- | --- | --- | --- |"]
        for m in logged:
            name = f"{m} {WITH_POSITION}"
            lines.append(f"| {m} | {_ci(cell(m, 'auc'))} | {_ci(cell(name, 'auc'))} | "
                         f"{difference_text(oriented(report, 'all', 'all', name, LEGACY, 'auc'))} | {_ci(cell(name, 'mrr'))} | "
                         f"{difference_text(oriented(report, 'all', 'all', name, LEGACY, 'mrr'))} |")
        lines.append(f"| {LEGACY} | | {_ci(cell(LEGACY, 'auc'))} | | {_ci(cell(LEGACY, 'mrr'))} | |")
    return lines


def render(report: dict) -> str:
    split, label = split_of(report)
    title = "# dropdown_rank evaluation report" + ("" if split == "test" else f": {label} days (split `{split}`)")
    lines = [title, ""] + _header(report) + _overall(report) + _online(report) + _position_bias(report)
    sliced = report["models"][next(iter(report["model_configs"]))]
    for slice_name, title in SLICE_TITLES.items():
        if slice_name in sliced:
            lines += _slice_section(report, slice_name, title)
    lines += _storage(report)
    for name in report.get("attention_profiles", {}):
        lines += ["", f"## Attention in {name}", "",
                  "Mean target-attention weight by history position (1 = most recent) and mean graph-attention weight "
                  "by neighbor rank (0 = the node itself), over positions and neighbors that exist (first seed's run).", "",
                  f"![attention {name}]({report['plots']['attention_' + name]})"]
    boot = report["bootstrap"]
    lines += ["", f"Report generated in {report['seconds']:.0f}s (bootstrap {boot['seconds']:.1f}s).", ""]
    return "\n".join(lines)
