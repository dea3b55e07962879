"""Metrics with 95% intervals by a Poisson bootstrap over users, paired across scorers, averaged over seeds.

Resampling unit: the **user**. A user's impressions are correlated (same interests, same model
errors), so resampling impressions would understate the uncertainty. Each replicate draws a
Poisson(1) multiplicity per user; all of that user's impressions and requests get it. The same
replicate weights are used for every scorer and slice, so differences are paired: their intervals
reflect only the disagreement between the scorers, not the shared noise of the sample.

**Seeds.** A *scorer* is one set of scores of the evaluated impressions: one trained run (a model name and a training
seed) or one baseline. Scorers with the same ``group`` (model name) are its seeds. A group's value
is the **mean over its seeds of the metric** (not the metric of averaged predictions: that would
score an ensemble nobody serves). Per replicate the same mean is taken, so the interval of a
group, and of the difference of two groups, is the percentile interval of seed-averaged
replicates. The report also gives each group's per-seed values (min, max, sd).

**When a difference is significant** (``*``): all of

1. the slice is large enough (:data:`MIN_CLICKING_USERS`, :data:`MIN_NON_CLICKS`);
2. the 95% interval of the seed-averaged paired difference excludes 0;
3. every seed agrees with that direction: each difference between a seed of ``a`` and a seed of
   ``b`` (every combination, so the verdict does not depend on how seeds are paired; for a
   ``same_seed`` pair, e.g. one run scored two ways, seed k against seed k) is non-zero with the
   interval's sign. With one seed per group this is the single point difference, and training-seed
   variance is not measured.

**Many comparisons** (``†``). A report holds every slice bucket × metric of every pair, and a claim read
off one starred cell among them is a multiple comparison. Each cell with an interval also gets a two-sided
p-value, ``erfc(|d| / (se √2))`` with ``se`` the standard deviation of its bootstrap replicates (a normal
approximation: with 1000 replicates a percentile p-value cannot go below 1/1001, which no correction over
dozens of cells could use). The **family** is every cell of one pair (a, b) in the report: all its slice
buckets and metrics with an interval. Holm-Bonferroni over the family at :data:`FAMILY_ALPHA` gives each
cell ``holm_p`` (the adjusted p-value) and ``family_size``; ``significant_holm`` (``†``) holds when the
cell is ``*`` (the rule above, uncorrected) and ``holm_p`` < 0.05. The uncorrected interval stays
beside it: Holm controls the chance of any false ``†`` in the family at 5%, and a cell that is ``*``
without ``†`` is a lead to test on other days, not a claim.

**Minimums.** A slice needs at least 30 users with a click and 30 non-clicked impressions (so also
30 users, 30 clicks and 30 requests with a click) for intervals. The simulated A/B metrics do not
read clicks: for them a slice needs at least 30 users with a request (:data:`MIN_REQUEST_USERS`). The resampling unit is the user,
and the positives carry the AUC's uncertainty: with a handful of clicking users the replicate
distribution has a handful of distinct values (one user: every replicate is the same, an interval of
width 0). Below the minimums a slice gets point values, ``too_few``, no interval and never a ``*``.

Everything is vectorized over chunks of replicates. AUC is two sparse products per scorer and
slice (``metrics.SortedScores``); GAUC, logloss, MRR and NDCG@10 are ratios of per-user sums, so all
of them for all scorers are one matrix product ``weights [R, U] @ sums [U, K]`` per chunk.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
from scipy.special import erfc

from dropdown_rank.evaluate.metrics import SortedScores, per_user_auc, ranking_values, request_ranks
from dropdown_rank.evaluate.online import ONLINE_METRICS, ClickModel, request_values

METRICS = ("auc", "gauc", "logloss", "mrr", "ndcg@10")
MIN_CLICKING_USERS = 30
MIN_NON_CLICKS = 30
MIN_REQUEST_USERS = 30  # the simulated A/B metrics' minimum: users with a request in the bucket
TOO_FEW = "too few users/clicks"
FAMILY_ALPHA = 0.05


@dataclasses.dataclass
class Scorer:
    """One set of scores for the evaluated (test or valid) impressions: a run (group = model name, its training seed) or a baseline."""

    group: str
    scores: np.ndarray
    seed: int | None = None
    probability: bool = True  # a click probability: logloss is defined
    slices: tuple | None = None  # evaluate only these slices (None: all)
    online: bool = True  # scored in the simulated A/B test (not a score that reads the logged position)


def interval(replicates: np.ndarray, point: float) -> dict:
    finite = replicates[np.isfinite(replicates)]
    low, high = np.percentile(finite, [2.5, 97.5]) if len(finite) else (np.nan, np.nan)
    return {"value": float(point), "low": float(low), "high": float(high)}


def p_value(replicates: np.ndarray, point: float) -> float:
    """Two-sided p of a difference from its bootstrap standard error (module docstring, many comparisons)."""
    finite = replicates[np.isfinite(replicates)]
    se = float(np.std(finite, ddof=1)) if len(finite) > 1 else np.nan
    if not np.isfinite(se):
        return 1.0
    if se == 0.0:
        return 0.0 if point != 0 else 1.0
    return float(erfc(abs(point) / (se * np.sqrt(2.0))))


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input's order: ``max over j <= i of (m - j + 1) p_(j)``, capped at 1."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    scaled = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def correct_families(differences: list, metrics: tuple) -> None:
    """Holm over each pair's cells with an interval (module docstring); sets ``holm_p``, ``family_size`` and
    ``significant_holm`` on each, and carries ``significant_holm`` to the pair's relative (``_lift``) cells."""
    families = {}
    for row in differences:
        for metric in metrics:
            if "p_value" in row.get(metric, {}):
                families.setdefault((row["a"], row["b"]), []).append(row[metric])
    for cells in families.values():
        for cell, adjusted in zip(cells, holm([c["p_value"] for c in cells])):
            cell.update(holm_p=float(adjusted), family_size=len(cells),
                        significant_holm=bool(cell["significant"] and adjusted < FAMILY_ALPHA))
    for row in differences:
        for metric in metrics:
            relative = row.get(f"{metric}_lift")
            if relative is not None and "significant" in relative:
                relative["significant_holm"] = row[metric]["significant_holm"]


def seed_agreement(a: list, b: list, same_seed: bool = False) -> dict:
    """Range of the per-seed differences a - b (every combination, or seed k with seed k)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if same_seed:
        if len(a) != len(b):
            raise ValueError("a same_seed pair needs the same seeds on both sides")
        differences = a - b
    else:
        differences = (a[:, None] - b[None, :]).ravel()
    low, high = float(differences.min()), float(differences.max())
    return {"seed_differences": [low, high], "seeds_agree": bool(low > 0 or high < 0), "sign": int(np.sign(low) if low > 0 or high < 0 else 0)}


def significance(cell: dict, seeds: dict) -> dict:
    """The ``*`` rule: enough data, interval excludes 0, and every seed difference on the same side."""
    side = 1 if cell.get("low", np.nan) > 0 else (-1 if cell.get("high", np.nan) < 0 else 0)
    cell["interval_excludes_0"] = side != 0
    cell.update({k: v for k, v in seeds.items() if k != "sign"})
    cell["significant"] = bool(not cell.get("too_few") and side != 0 and seeds["sign"] == side)
    return cell


class _Bucket:
    """One slice bucket: which impressions, and everything about it that no scorer changes."""

    def __init__(self, mask, labels, users, requests, request_user, num_users, request_size):
        self.index = np.flatnonzero(mask)
        y, u = labels[self.index], users[self.index]
        clicked_users = np.unique(u[y == 1])
        self.counts = {"impressions": int(len(self.index)), "clicks": int(y.sum()), "users": int(len(np.unique(u))),
                       "users_with_click": int(len(clicked_users)), "requests": int(len(np.unique(requests[self.index]))),
                       "clicked_requests": int(len(np.unique(requests[self.index][y == 1])))}
        self.counts["requests_without_click"] = self.counts["requests"] - self.counts["clicked_requests"]
        self.enough = self.counts["users_with_click"] >= MIN_CLICKING_USERS and len(y) - y.sum() >= MIN_NON_CLICKS
        self.enough_online = self.counts["users"] >= MIN_REQUEST_USERS
        self.has_both = 0 < y.sum() < len(y)
        self.impressions = np.bincount(u, minlength=num_users).astype(np.float64)
        self.clicks = np.bincount(u, weights=y, minlength=num_users)
        both = (self.clicks > 0) & (self.clicks < self.impressions)
        self.gauc_impressions = np.where(both, self.impressions, 0.0)  # GAUC's denominator: users with both classes
        self.clicked_requests = np.bincount(request_user[np.unique(requests[self.index][y == 1])], minlength=num_users).astype(np.float64)
        # Online metrics are per request: only a bucket of whole requests (activity, request kind) can have them.
        self.request_codes, shown = np.unique(requests[self.index], return_counts=True)
        self.whole_requests = bool((shown == request_size[self.request_codes]).all())
        self.requests = np.bincount(request_user[self.request_codes], minlength=num_users).astype(np.float64)


def _relative(ea: dict, eb: dict, difference: dict, enough: bool, group_draws: dict, key_a: tuple, key_b: tuple) -> dict:
    """a / b - 1 with its interval; its ``*`` is the difference's (a ratio above 1 is a positive difference)."""
    cell = {"value": ea["value"] / eb["value"] - 1.0}
    if enough:
        cell = interval(group_draws[key_a] / group_draws[key_b] - 1.0, cell["value"])
        cell["significant"] = difference["significant"]
    else:
        cell["too_few"] = TOO_FEW
    return cell


def _oracle_shares(results: dict, group_draws: dict, reference: str, ceiling: str) -> None:
    """Every group's share of the ceiling's expected-click lift over the reference, per bucket of whole requests."""
    if reference not in results or ceiling not in results:
        return
    for group, per_slice in results.items():
        for s, per_bucket in per_slice.items():
            for b, entry in per_bucket.items():
                ref, top = results[reference][s].get(b, {}).get("expected_clicks"), results[ceiling][s].get(b, {}).get("expected_clicks")
                if "expected_clicks" not in entry or ref is None or top is None:
                    continue
                per_seed = (np.asarray(entry["expected_clicks"]["per_seed"]) - ref["value"]) / (top["value"] - ref["value"])
                cell = {"value": float(per_seed.mean()), "per_seed": per_seed.tolist()}
                key = (group, s, b, "expected_clicks")
                if key in group_draws:
                    ref_draws, top_draws = group_draws[(reference, s, b, "expected_clicks")], group_draws[(ceiling, s, b, "expected_clicks")]
                    with np.errstate(invalid="ignore", divide="ignore"):
                        share = (group_draws[key] - ref_draws) / (top_draws - ref_draws)
                    cell.update({k: v for k, v in interval(share, cell["value"]).items() if k != "value"})
                else:
                    cell["too_few"] = TOO_FEW
                entry["oracle_share"] = cell


def bootstrap_report(labels: np.ndarray, users: np.ndarray, scores: dict, slices: dict, replicates: int = 1000,
                     seed: int = 0, chunk: int = 200, requests: np.ndarray | None = None, pairs: list | None = None,
                     reference: str | None = None, online: ClickModel | None = None, positions: np.ndarray | None = None,
                     lift: tuple | None = None, online_slices: tuple | None = None) -> dict:
    """Point values, seed spread, intervals and paired differences for every group and slice bucket.

    ``scores``: ``{scorer id: Scorer}`` (or ``{group: [n] probabilities}``, one seed each);
    ``slices``: ``{slice: {bucket: [n] bool mask}}``; ``users``: int codes 0..U-1; ``requests``:
    int codes of request ids (default: one request per user, for callers without requests).
    ``pairs``: ``(a, b)`` or ``(a, b, "same_seed")`` group pairs (default: every pair of groups, with
    ``reference`` first in its pairs). Returns ``{"models": {group: {slice: {bucket: …}}}, "pairs": […], …}``.

    ``online`` (a world's :class:`~dropdown_rank.evaluate.online.ClickModel`, with the logged ``positions``
    for ties) adds the simulated A/B metrics ``expected_clicks`` and ``ctr@1`` per request, in buckets
    of whole requests; each pair then also gets ``<metric>_lift`` (a / b - 1), and with ``lift =
    (reference, ceiling)`` every group gets ``oracle_share``: (group - reference) / (ceiling - reference)
    of expected clicks, the share of the available lift it captures. ``online_slices`` limits them to
    those slices (default: every slice whose buckets hold whole requests).
    """
    started = time.perf_counter()
    labels = np.asarray(labels).astype(np.float64)
    users = np.asarray(users)
    requests = users if requests is None else np.asarray(requests)
    num_users = int(users.max()) + 1
    request_user = np.zeros(int(requests.max()) + 1, dtype=np.int64)
    request_user[requests] = users
    request_size = np.bincount(requests)
    metrics = METRICS + (ONLINE_METRICS if online is not None else ())
    scorers = {k: v if isinstance(v, Scorer) else Scorer(group=k, scores=np.asarray(v)) for k, v in scores.items()}
    buckets = {(s, b): _Bucket(mask, labels, users, requests, request_user, num_users, request_size) for s, bs in slices.items() for b, mask in bs.items()}
    sums = _UserSums(buckets)
    points, cells = {}, {}
    for key, scorer in scorers.items():
        by_request = None if online is None or not scorer.online else request_values(requests, np.asarray(scorer.scores), positions, online, len(request_size))
        for (s, b), (point, cell) in _point_values(key, scorer, buckets, labels, users, requests, request_user, num_users, sums,
                                                   by_request, online_slices).items():
            points[(key, s, b)], cells[(key, s, b)] = point, cell
    draws = _replicate_draws(points, cells, buckets, sums, metrics, online is not None, num_users, replicates, chunk, seed)
    results, group_draws = _group_results(scorers, buckets, points, draws, metrics)
    differences = _pair_differences(results, group_draws, buckets, metrics, pairs, reference)
    if online is not None and lift is not None:
        _oracle_shares(results, group_draws, *lift)
    return {"models": results, "pairs": differences, "replicates": replicates, "seed": seed, "unit": "user",
            "minimums": {"users_with_click": MIN_CLICKING_USERS, "non_clicks": MIN_NON_CLICKS},
            "seconds": round(time.perf_counter() - started, 2)}


class _UserSums:
    """Per-user sums, as the columns of one matrix, named by key: what a replicate's user weights multiply."""

    def __init__(self, buckets: dict):
        self.columns, self.column_of = [], {}
        for (s, b), bucket in buckets.items():
            self.add((s, b, "impressions"), bucket.impressions)
            self.add((s, b, "clicked_requests"), bucket.clicked_requests)
            self.add((s, b, "gauc_den"), bucket.gauc_impressions)
            self.add((s, b, "clicks"), bucket.clicks)
            self.add((s, b, "non_clicks"), bucket.impressions - bucket.clicks)
            self.add((s, b, "requests"), bucket.requests)

    def add(self, key, values) -> None:
        self.column_of[key] = len(self.columns)
        self.columns.append(values)

    def matrix(self) -> np.ndarray:
        return np.column_stack(self.columns)


def _point_values(key, scorer, buckets: dict, labels, users, requests, request_user, num_users: int, sums: _UserSums,
                  by_request, online_slices) -> dict:
    """One scorer's point values and AUC cell per bucket ``{(slice, bucket): (point, cell)}``; adds its per-user
    sums to ``sums``."""
    score = np.asarray(scorer.scores)
    ranks = request_ranks(requests, score, labels)
    loss = None
    if scorer.probability:
        p = np.clip(score.astype(np.float64), 1e-7, 1 - 1e-7)
        loss = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    out = {}
    for (s, b), bucket in buckets.items():
        if scorer.slices is not None and s not in scorer.slices:
            continue
        idx, y, u = bucket.index, labels[bucket.index], users[bucket.index]
        point = {"auc": np.nan, "gauc": np.nan, "logloss": np.nan, "mrr": np.nan, "ndcg@10": np.nan}
        cell = None
        if bucket.has_both:
            cell = SortedScores(score[idx], y, clusters=u, num_clusters=num_users)
            point["auc"] = float(cell.auc(np.ones(num_users)))
            user_auc, counts = per_user_auc(u, score[idx], y, num_users)
            sums.add((key, s, b, "gauc_num"), np.where(np.isnan(user_auc), 0.0, counts * np.nan_to_num(user_auc)))
            if bucket.gauc_impressions.sum() > 0:
                point["gauc"] = float(sums.columns[-1].sum() / bucket.gauc_impressions.sum())
        if loss is not None and len(idx):
            sums.add((key, s, b, "loss"), np.bincount(u, weights=loss[idx], minlength=num_users))
            point["logloss"] = float(loss[idx].mean())
        if bucket.counts["clicked_requests"]:
            clicked = np.zeros(len(labels), dtype=bool)
            clicked[idx[y == 1]] = True
            values = ranking_values(requests, ranks, clicked)
            owner = request_user[values["request"]]
            sums.add((key, s, b, "rr"), np.bincount(owner, weights=values["rr"], minlength=num_users))
            sums.add((key, s, b, "ndcg"), np.bincount(owner, weights=values["ndcg"], minlength=num_users))
            point["mrr"], point["ndcg@10"] = float(values["rr"].mean()), float(values["ndcg"].mean())
        if by_request is not None and bucket.whole_requests and (online_slices is None or s in online_slices):
            owner = request_user[bucket.request_codes]
            for metric in ONLINE_METRICS:
                value = by_request[metric][bucket.request_codes]
                sums.add((key, s, b, metric), np.bincount(owner, weights=value, minlength=num_users))
                point[metric] = float(value.mean())
        out[(s, b)] = (point, cell)
    return out


def _enough(bucket: "_Bucket", metric: str) -> bool:
    return bucket.enough_online if metric in ONLINE_METRICS else bucket.enough


def _replicate_draws(points: dict, cells: dict, buckets: dict, sums: _UserSums, metrics: tuple, online: bool, num_users: int,
                     replicates: int, chunk: int, seed: int) -> dict:
    """Per (scorer, slice, bucket) and metric, its value in every replicate: one chunk of Poisson user weights at a time,
    shared by every scorer and slice."""
    matrix, column_of = sums.matrix(), sums.column_of
    boot = [k for k in points if buckets[k[1:]].enough or (online and buckets[k[1:]].enough_online)]
    draws = {k: {m: [] for m in metrics} for k in boot}
    rng = np.random.default_rng(seed)
    for start in range(0, replicates, chunk):
        weights = rng.poisson(1.0, size=(min(chunk, replicates - start), num_users)).astype(np.float32)
        by_user = np.ascontiguousarray(weights.T)
        linear = weights.astype(np.float64) @ matrix
        get = lambda key: linear[:, column_of[key]] if key in column_of else np.full(len(weights), np.nan)  # noqa: E731
        with np.errstate(invalid="ignore", divide="ignore"):
            for key in boot:
                scorer_key, s, b = key
                out = draws[key]
                for metric in metrics[len(METRICS):]:
                    out[metric].append(get((scorer_key, s, b, metric)) / get((s, b, "requests")))
                if not buckets[(s, b)].enough:
                    continue
                out["auc"].append(cells[key].auc_columns(by_user, get((s, b, "clicks")) * get((s, b, "non_clicks"))))
                out["gauc"].append(get((scorer_key, s, b, "gauc_num")) / get((s, b, "gauc_den")))
                out["logloss"].append(get((scorer_key, s, b, "loss")) / get((s, b, "impressions")))
                out["mrr"].append(get((scorer_key, s, b, "rr")) / get((s, b, "clicked_requests")))
                out["ndcg@10"].append(get((scorer_key, s, b, "ndcg")) / get((s, b, "clicked_requests")))
    return {k: {m: np.concatenate(v) for m, v in per.items() if v} for k, per in draws.items()}


def _group_results(scorers: dict, buckets: dict, points: dict, draws: dict, metrics: tuple) -> tuple[dict, dict]:
    """Per group (model) and bucket: seed means, seed spread, intervals of the seed-averaged replicates; and those
    replicates, for the pairs."""
    groups = {}
    for key, scorer in scorers.items():
        groups.setdefault(scorer.group, []).append(key)
    results, group_draws = {}, {}
    for group, keys in groups.items():
        for (s, b), bucket in buckets.items():
            present = [k for k in keys if (k, s, b) in points]
            if not present:
                continue
            entry = {**bucket.counts, "seeds": [scorers[k].seed for k in present], "too_few": not bucket.enough}
            for metric in metrics:
                per_seed = np.array([points[(k, s, b)].get(metric, np.nan) for k in present])
                if np.isnan(per_seed).any():
                    continue
                cell = {"value": float(per_seed.mean()), "per_seed": per_seed.tolist(), "min": float(per_seed.min()),
                        "max": float(per_seed.max()), "sd": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else None}
                if _enough(bucket, metric):
                    mean_draws = np.mean([draws[(k, s, b)][metric] for k in present], axis=0)
                    group_draws[(group, s, b, metric)] = mean_draws
                    cell.update({k: v for k, v in interval(mean_draws, cell["value"]).items() if k != "value"})
                else:
                    cell["too_few"] = TOO_FEW
                entry[metric] = cell
            results.setdefault(group, {}).setdefault(s, {})[b] = entry
    return results, group_draws


def _pair_differences(results: dict, group_draws: dict, buckets: dict, metrics: tuple, pairs, reference) -> list:
    """Paired differences a - b per bucket and metric, with intervals and the significance rule."""
    if pairs is None:
        names = list(results)
        ordered = [reference] + [g for g in names if g != reference] if reference in results else names
        pairs = [(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1:]]
    differences = []
    for pair in pairs:
        a, b = pair[0], pair[1]
        same_seed = len(pair) > 2 and pair[2] == "same_seed"
        for (s, bucket_name), bucket in buckets.items():
            ea, eb = results.get(a, {}).get(s, {}).get(bucket_name), results.get(b, {}).get(s, {}).get(bucket_name)
            if ea is None or eb is None:
                continue
            row = {"a": a, "b": b, "slice": s, "bucket": bucket_name, "seed_pairing": "same seed" if same_seed else "every combination"}
            for metric in metrics:
                if metric not in ea or metric not in eb:
                    continue
                point = ea[metric]["value"] - eb[metric]["value"]
                if _enough(bucket, metric):
                    replicates = group_draws[(a, s, bucket_name, metric)] - group_draws[(b, s, bucket_name, metric)]
                    cell = dict(interval(replicates, point), p_value=p_value(replicates, point))
                else:
                    cell = {"value": float(point), "too_few": TOO_FEW}
                row[metric] = significance(cell, seed_agreement(ea[metric]["per_seed"], eb[metric]["per_seed"], same_seed))
                if metric in ONLINE_METRICS:
                    row[f"{metric}_lift"] = _relative(ea[metric], eb[metric], row[metric], _enough(bucket, metric), group_draws,
                                                      (a, s, bucket_name, metric), (b, s, bucket_name, metric))
            differences.append(row)
    correct_families(differences, metrics)
    return differences
