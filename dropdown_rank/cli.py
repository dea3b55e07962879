"""``dropdown-rank``: the command line. Each subcommand is one stage; ``demo`` chains them.

Stage modules are imported inside the handlers so that ``--help`` and argument errors answer
without loading TensorFlow.

A user mistake ends with one line, ``dropdown-rank <command>: error: ...``, and exit code 2, like
argparse's own errors: argument values out of range are refused while parsing, and during a command
the ``ValueError`` (``SchemaError`` included) and ``FileNotFoundError`` the library raises for bad
input are reported the same way. A ``ValueError`` raised outside dropdown_rank's own code (inside
TensorFlow, NumPy, pandas) is a bug, not a user mistake, and keeps its traceback; so does any other
exception. ``DROPDOWN_RANK_TRACEBACK=1`` shows the traceback of every error.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# layers.request_features.FEATURE_GROUPS and "none", spelled out so that --help imports no TensorFlow (a test checks).
FEATURE_CHOICES = ("exact_match", "personal", "popularity", "ctr", "prefix", "none")
# logs.synth.SCALES, spelled out for the same reason (a test checks).
SCALE_CHOICES = ("tiny", "small", "default", "static")


def _number(kind, minimum: float, strict: bool, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {what}, not {text}")
        return value

    parse.__name__ = what.replace(" ", "_")
    return parse


positive_int = _number(int, 0, True, "a positive integer")
non_negative_int = _number(int, 0, False, "an integer >= 0")
positive_float = _number(float, 0.0, True, "a positive number")
non_negative_float = _number(float, 0.0, False, "a number >= 0")


def _share(text: str) -> float:
    value = non_negative_float(text)
    if not value <= 1:  # also NaN
        raise argparse.ArgumentTypeError(f"must be a share from 0 to 1, not {text}")
    return value


def _gap_minutes(text: str):
    """``--resubmit-gap-minutes``: a number >= 0, or ``none`` (no limit)."""
    return None if text.strip().lower() == "none" else non_negative_float(text)


def _add_build_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("split")
    g.add_argument("--valid-days", type=positive_int, default=3, help="days of validation before the test period (default 3)")
    g.add_argument("--test-days", type=positive_int, default=3, help="last days of the log used for test (default 3)")
    g.add_argument("--train-days", type=positive_int, default=None, help="training days before validation (default: all earlier days)")
    g.add_argument("--warmup-days", type=non_negative_int, default=3,
                   help="first training days whose events only warm the graphs up: their impressions are not samples (default 3)")
    g = parser.add_argument_group("graph")
    g.add_argument("--neighbors", type=positive_int, default=10, help="top-K neighbors kept per node (default 10)")
    g.add_argument("--cooccurrence", choices=("session", "window"), default="session",
                   help="count pairs inside a session (default) or within --window-minutes")
    g.add_argument("--session-gap-minutes", type=positive_float, default=30.0, help="a gap longer than this ends a session (default 30)")
    g.add_argument("--window-minutes", type=positive_float, default=60.0, help="pair window in window mode (default 60)")
    g.add_argument("--max-distance", type=positive_int, default=10, help="pairs at most this many same-kind behaviors apart (default 10)")
    g.add_argument("--min-cooccur", type=int, default=1, help="drop edges seen fewer times (default 1)")
    g.add_argument("--min-weight", type=non_negative_float, default=0.0, help="drop edges with a smaller normalized weight (default 0)")
    g.add_argument("--graph-window-days", type=positive_int, default=30,
                   help="each day's graph snapshot counts the events of this many days before it (default 30)")
    g.add_argument("--q2q-source", choices=("session", "item", "both"), default="session",
                   help="where q2q neighbors come from: session = queries co-occurring in a session (default); item = "
                        "queries that led to the same clicked items (query-item-query paths: a click credits the "
                        "session's latest query before it); both = the two edge sets added. i2i is unchanged. "
                        "item/both: --engine memory only")
    g.add_argument("--max-item-queries", type=positive_int, default=50,
                   help="with --q2q-source item/both: an item that more than N distinct queries led to in a snapshot's "
                        "window is a hub and links no queries (default 50)")
    g.add_argument("--neighbor-rank", choices=("cooccurrence", "random_walk"), default="cooccurrence",
                   help="how each node's top-K neighbors are chosen, q2q and i2i: cooccurrence = by co-occurrence "
                        "weight (default); random_walk = by PinSAGE-style importance: the expected visits of random "
                        "walks of --walk-length steps from the node over the snapshot's count-weighted graph, computed "
                        "exactly, so nodes a few hops away can be neighbors (with count 0). Still point in time. "
                        "--engine memory only")
    g.add_argument("--walk-length", type=positive_int, default=3, metavar="N",
                   help="with --neighbor-rank random_walk: steps of each walk, the most hops away a neighbor can be (default 3)")
    g.add_argument("--walk-keep", type=positive_int, default=50, metavar="M",
                   help="with --neighbor-rank random_walk: walks leave a node only along its M most likely edges, and "
                        "after each step each node keeps only its M most visited nodes (bounds memory around hubs; "
                        "at least --neighbors; default 50)")
    g = parser.add_argument_group("samples")
    g.add_argument("--seq-len", type=positive_int, default=50, help="history length stored per sample; models read a prefix (default 50)")
    g.add_argument("--lookback-days", type=positive_float, default=30.0, help="window for the activity slice field (default 30)")
    g.add_argument("--personal-days", type=positive_float, default=365.0,
                   help="look-back of the user's own count of the candidate (user_candidate_count/_age; default 365)")
    g.add_argument("--popularity-days", type=positive_int, default=30,
                   help="whole days before the request's day over which a candidate's query count, impressions and "
                        "clicks are summed (default 30)")
    g.add_argument("--min-count", type=positive_int, default=1, help="vocabulary minimum count in the training period (default 1)")
    g.add_argument("--bad-rows", choices=("error", "skip"), default="error",
                   help="on a bad row: stop with an error (default), or skip it and count it in stats.json")


def _build_config(args):
    from dropdown_rank.build import BuildConfig
    from dropdown_rank.graph import GraphConfig
    from dropdown_rank.samples import SampleConfig
    from dropdown_rank.split import SplitConfig

    return BuildConfig(
        split=SplitConfig(args.valid_days, args.test_days, args.train_days, args.warmup_days),
        graph=GraphConfig(
            neighbors=args.neighbors, mode=args.cooccurrence, session_gap_minutes=args.session_gap_minutes,
            window_minutes=args.window_minutes, max_distance=args.max_distance, min_count=args.min_cooccur,
            min_weight=args.min_weight, window_days=args.graph_window_days, q2q_source=args.q2q_source,
            max_item_queries=args.max_item_queries, neighbor_rank=args.neighbor_rank, walk_length=args.walk_length,
            walk_keep=args.walk_keep,
        ),
        samples=SampleConfig(max_len=args.seq_len, lookback_days=args.lookback_days, personal_days=args.personal_days,
                             popularity_days=args.popularity_days),
        min_count=args.min_count,
        bad_rows=args.bad_rows,
    )


def cmd_synth(args) -> None:
    from dropdown_rank.logs.synth import write_world

    shares = {name: value for name, value in (("birth_share", args.birth_share), ("death_share", args.death_share))
              if value is not None}  # unset: the preset's own
    write_world(args.out, scale=args.scale, seed=args.seed, **shares)


def cmd_aol(args) -> None:
    from dropdown_rank.logs.aol import convert_aol

    convert_aol(args.src, args.out, prefix_rule=args.prefix_rule, prefix_len=args.prefix_len, candidates=args.candidates,
                popularity_days=args.popularity_days, unlisted=args.unlisted, resubmit_gap_minutes=args.resubmit_gap_minutes)


def cmd_bestbuy(args) -> None:
    from dropdown_rank.logs.bestbuy import convert_bestbuy

    convert_bestbuy(args.src, args.out, prefix_len=args.prefix_len, candidates=args.candidates)


def _build(logs, out, args) -> dict:
    from dropdown_rank.build import build

    return build(logs, out, _build_config(args))


def cmd_build(args) -> None:
    if args.engine == "memory":
        if args.beam_args:
            raise ValueError(f"Beam pipeline options ({' '.join(args.beam_args)}) are for --engine beam")
        _build(args.logs, args.out, args)
        return
    from dropdown_rank.beam import build_beam

    build_beam(args.logs, args.out, _build_config(args), pipeline_args=args.beam_args)


def _add_model_args(parser: argparse.ArgumentParser, choose_model: bool = True, epochs: bool = True) -> None:
    g = parser.add_argument_group("model")
    if choose_model:  # demo trains fixed models and uses --seq-len for the stored length
        g.add_argument("--model", choices=("base", "hgcn", "gat"), default="base",
                       help="ranker kind (default base): base reads ids; hgcn and gat put the GNN context module in "
                            "front, aggregating neighbors by HGCN or by graph attention (GAT; named attention before "
                            "2026-12, as older result files call it). Every kind pools its histories by target attention")
        g.add_argument("--seq-len", type=positive_int, default=20, help="history length L the model reads (default 20)")
        g.add_argument("--neighbors", type=positive_int, default=None,
                       help="GNN models: read the top N of each node's stored neighbors (default: all the build stores, its --neighbors)")
    g.add_argument("--id-time-only", action="store_true", help="GNN neighbors carry only id and time features (no weights)")
    g.add_argument("--graph-impl", choices=("fused", "spektral"), default="fused",
                   help="fused layers (default, faster) or spektral GCNConv/GATConv over star subgraphs (same function)")
    g.add_argument("--dim", type=positive_int, default=16, help="embedding size (default 16)")
    g.add_argument("--heads", type=positive_int, default=1, help="attention heads of the gat GNN (default 1)")
    g.add_argument("--relations", action="store_true",
                   help="GNN models: add how the candidate is related to the last L queries in the request's q2q snapshot "
                        "(edge either way, weight, age, count, recency) to the request features (the +rel variants)")
    g.add_argument("--two-hops", action="store_true",
                   help="with --relations: also the last L queries that share a q2q neighbor with the candidate (+2hop)")
    g.add_argument("--session-context", action="store_true",
                   help="GNN models: pool the graph context of the current session's behaviors (chained back from the "
                        "request by gaps of at most the default --session-gap-minutes) as a context of its own (+ses)")
    g.add_argument("--position-bias", action="store_true",
                   help="train with a PAL position-bias tower; serving scores ignore position")
    g.add_argument("--position-lr-multiplier", type=positive_float, default=None,
                   help="with --position-bias: the tower's logits learn this many times faster than the ranker (default 20, "
                        "ModelConfig's)")
    g.add_argument("--no-lagged-vocab", action="store_true",
                   help="let training rows read ids first seen on their own day (then OOV vectors are never trained)")
    g.add_argument("--features", nargs="*", choices=FEATURE_CHOICES, default=None, metavar="GROUP",
                   help="request-feature groups the model reads (default: all of " + ", ".join(FEATURE_CHOICES[:-1]) +
                        "); 'none' for the sequence-only ranker")
    g = parser.add_argument_group("training")
    g.add_argument("--no-calibrate", action="store_true",
                   help="skip the Platt scaling fitted on validation days after training (probabilities stay raw)")
    if epochs:  # train-daily makes one pass per day and stops at none
        g.add_argument("--epochs", type=positive_int, default=4, help="maximum epochs; early stopping on exact val AUC (default 4)")
        g.add_argument("--patience", type=non_negative_int, default=1, help="epochs without val AUC gain before stopping (default 1)")
    g.add_argument("--batch-size", type=positive_int, default=1024)
    g.add_argument("--learning-rate", type=positive_float, default=1e-3)
    g.add_argument("--optimizer", choices=("lazy_adam", "adam"), default="lazy_adam",
                   help="lazy_adam (default) updates only the embedding rows a batch touches, so a step's cost follows "
                        "the batch, not the vocabulary size; adam is tf-keras's Adam over every row at every step")
    g.add_argument("--seed", type=int, default=0, help="fixes initialization and shuffling")


def _model_config(args, **override):
    from dropdown_rank.model import ModelConfig

    values = dict(id_time_only=args.id_time_only, graph_impl=args.graph_impl, dim=args.dim, heads=args.heads,
                  position_bias=args.position_bias, lagged_vocab=not args.no_lagged_vocab, relations=args.relations,
                  two_hops=args.two_hops, session=args.session_context)
    if args.position_lr_multiplier is not None:
        if not args.position_bias:
            raise ValueError("--position-lr-multiplier sets the position tower's learning rate: give it with --position-bias")
        values["position_lr_multiplier"] = args.position_lr_multiplier
    if args.features is not None:
        if "none" in args.features and len(args.features) > 1:
            raise ValueError("--features: 'none' cannot be combined with feature groups")
        values["features"] = tuple(g for g in args.features if g != "none")
    if hasattr(args, "model"):
        values.update(kind=args.model, seq_len=args.seq_len, neighbors=args.neighbors)
    values.update(override)
    return ModelConfig(**values)


def _train_config(args):
    from dropdown_rank.train import TrainConfig

    epochs = dict(epochs=args.epochs, patience=args.patience) if hasattr(args, "epochs") else {}
    return TrainConfig(batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
                       calibrate=not args.no_calibrate, optimizer=args.optimizer, **epochs)


def cmd_train(args) -> None:
    from dropdown_rank.cluster import MIN_SHARD_BYTES
    from dropdown_rank.train import train

    train(args.data, args.out, _model_config(args), _train_config(args), strategy=args.strategy,
          min_shard_bytes=args.min_shard_bytes or MIN_SHARD_BYTES)


def cmd_train_daily(args) -> None:
    from dropdown_rank.daily import train_daily

    train_daily(args.data, args.out, _model_config(args), _train_config(args), parent=args.parent, days=args.days,
                validate_daily=not args.no_daily_validation)


def cmd_evaluate(args) -> None:
    from dropdown_rank.evaluate.report import evaluate
    from dropdown_rank.evaluate.slices import SliceConfig

    config = SliceConfig(activity_edges=tuple(args.activity_edges or SliceConfig.activity_edges), activity_explicit=bool(args.activity_edges),
                         pv_edges=tuple(args.pv_edges) if args.pv_edges else None,
                         **({"fresh_days": args.fresh_days} if args.fresh_days is not None else {}))
    evaluate(args.data, args.runs, args.out, config, replicates=args.bootstrap, seed=args.seed, storage=not args.no_storage,
             split=args.split)


def cmd_export(args) -> None:
    from dropdown_rank.export import export

    export(args.run, args.out, graph_dir=args.graph, precompute_context=args.precompute_context, overwrite=args.overwrite,
           force_graph=args.force_graph)


def score_example(saved_model_dir: Path) -> list:
    """Load a SavedModel the way a serving process would and score its example request."""
    import json

    import tensorflow as tf

    from dropdown_rank.export import instances_to_tensors

    model = tf.saved_model.load(str(saved_model_dir))
    body = json.loads((saved_model_dir / "serving_example.json").read_text())
    scores = model.signatures["serving_default"](**instances_to_tensors(body))["ctr"].numpy()
    return [(i["candidate"], float(s)) for i, s in zip(body["instances"], scores)]


def _online_summary(report: dict, name: str) -> str:
    """One scorer's expected-click lift over the legacy order and its share of the oracle's lift, from a report."""
    from dropdown_rank.evaluate.markdown import LEGACY, RELEVANCE

    overall = report["models"][name]["all"]["all"]
    lift = next(p["expected_clicks_lift"] for p in report["pairs"]
                if (p["a"], p["b"], p["slice"]) == (name, LEGACY, "all") and "expected_clicks_lift" in p)
    share = overall.get("oracle_share")
    captured = f", {100 * share['value']:.0f}% of the oracle's lift" if share and name != RELEVANCE else ""
    return (f"expected clicks {overall['expected_clicks']['value']:.4f}/request, {100 * lift['value']:+.1f}% "
            f"[{100 * lift['low']:+.1f}%, {100 * lift['high']:+.1f}%] vs legacy order{captured}")


def cmd_replay(args) -> int:
    from dropdown_rank.replay import check_served, replay

    if args.served is not None:
        report = check_served(args.served, args.work, args.split, report_path=args.report)
        return 1 if report["mismatches"] or report["rows_missing"] or report["rows_extra"] else 0
    report = replay(args.logs, args.work, args.split, progress_bar=sys.stderr.isatty(), report_path=args.report)
    return 1 if report["mismatches"] else 0


def cmd_profile(args) -> None:
    from dropdown_rank.evaluate.profile import ProfileConfig, write_profile

    write_profile(args.logs, args.out, args.work, ProfileConfig(warmup_days=args.warmup_days), bad_rows=args.bad_rows)


def cmd_demo(args) -> None:
    """synth → build → profile → train base_20 and hgcn_20+rel → evaluate → export hgcn_20+rel and score a request.

    The GNN is the one with candidate-history relations: the lever that made the graph pay on this
    world (experiments/README.md)."""
    from dropdown_rank.evaluate.markdown import RELEVANCE, WHY_ONLINE_DIFFERS
    from dropdown_rank.evaluate.profile import write_profile
    from dropdown_rank.evaluate.report import evaluate
    from dropdown_rank.export import export
    from dropdown_rank.logs.synth import write_world
    from dropdown_rank.train import train_or_reuse

    out = Path(args.out)
    timings, aucs = {}, {}

    def stage(name, fn, *fn_args, **fn_kwargs):
        started = time.perf_counter()
        result = fn(*fn_args, **fn_kwargs)
        timings[name] = time.perf_counter() - started
        return result

    stage("synth", write_world, out / "logs", scale=args.scale, seed=args.seed)
    stage("build", _build, out / "logs", out / "work", args)
    stage("profile", write_profile, out / "logs", out / "profile", out / "work")  # how this world compares with a real log
    configs = [_model_config(args, kind=kind, seq_len=20, relations=kind == "hgcn") for kind in ("base", "hgcn")]
    for config in configs:
        aucs[config.name] = stage(f"train {config.name}", train_or_reuse, out / "work", out / "runs" / config.slug, config,
                                  _train_config(args))["test_auc"]
    report = stage("evaluate", evaluate, out / "work", [out / "runs" / c.slug for c in configs], out / "report", seed=args.seed)
    gnn = configs[-1]  # the GNN
    stage(f"export {gnn.name}", export, out / "runs" / gnn.slug, out / "export" / gnn.slug)
    scored = stage("score via SavedModel", score_example, out / "export" / gnn.slug)
    print("\ndemo results (exact test AUC on logged clicks; simulated A/B: expected clicks per request against the legacy order, "
          "with the user-bootstrap 95% interval):")
    for name, value in aucs.items():
        print(f"  {name}: AUC {value:.4f}; {_online_summary(report, name)}")
    print(f"  {_online_summary(report, RELEVANCE)} (relevance oracle: the best order)")
    print("  " + WHY_ONLINE_DIFFERS)
    print(f"one dropdown request scored by the loaded SavedModel ({out / 'export' / gnn.slug}):")
    for candidate, score in scored:
        print(f"  {score:.4f}  {candidate}")
    print("demo outputs:")
    print(f"  logs (synthetic world): {out / 'logs'}")
    print(f"  work (graph, samples, stats.json): {out / 'work'}")
    print(f"  log profile: {out / 'profile' / 'profile.md'}")
    print(f"  runs: {out / 'runs'}")
    print(f"  report: {out / 'report' / 'report.md'}")
    print(f"  SavedModel: {out / 'export' / gnn.slug} (model_card.json, serving_example.json)")
    print("demo stage times: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))


def _add_aol_command(sub) -> None:
    """``dropdown-rank aol``: its many conversion choices."""
    p = sub.add_parser("aol", help="convert the AOL query log (2006) into the log schema, with reconstructed MPC impressions")
    p.add_argument("--src", required=True, help="the extract's per-user <AnonID>.txt files (a directory or the .tar.gz holding "
                   "them) or the original release's tab-separated files (a file or directory, plain or .gz)")
    p.add_argument("--out", required=True)
    p.add_argument("--prefix-rule", choices=("chars", "word"), default="chars",
                   help="typed prefix: the query's first N characters (chars) or its first word's first N characters (word) "
                        "(default chars)")
    p.add_argument("--prefix-len", type=positive_int, default=3, help="N of --prefix-rule (default 3)")
    p.add_argument("--candidates", type=positive_int, default=10, help="most popular completions shown per request, at least 2 (default 10)")
    p.add_argument("--popularity-days", type=positive_int, default=None,
                   help="count popularity over the N days before the request's day (default: every earlier day)")
    p.add_argument("--unlisted", choices=("drop", "insert"), default="drop",
                   help="when the issued query is not among the candidates: drop the request (default) or insert it in place "
                        "of the last one")
    p.add_argument("--resubmit-gap-minutes", type=_gap_minutes, default=30, metavar="M",
                   help="a query repeating the user's previous query at most M minutes later (a return to the result page) "
                        "stays an event but is not a dropdown request; 0 turns this off, 'none' sets no limit (default 30)")
    p.set_defaults(handler=cmd_aol)


def _add_log_checks(sub) -> None:
    """``dropdown-rank replay`` and ``profile``: what a log holds, and whether served features are the build's."""
    p = sub.add_parser("replay", help="replay logs through the reference online feature assembler (or read your serving "
                                      "system's features) and compare every sample row of a split with the build's, field "
                                      "by field (exit 1 on a mismatch)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--logs", help="the logs the work directory was built from: replayed through the reference assembler")
    source.add_argument("--served", help="instead, features your serving system computed: a Parquet file (or directory) "
                                         "with request_id, position and the sample fields, matched by request and candidate")
    p.add_argument("--work", required=True, help="a work directory (dropdown-rank build)")
    # split.SPLITS, spelled out so that --help imports no pandas
    p.add_argument("--split", choices=("train", "valid", "test"), default="test", help="the rows to compare (default test)")
    p.add_argument("--report", help="also write the report as JSON to this file")
    p.set_defaults(handler=cmd_replay)

    p = sub.add_parser("profile", help="a log's shape: new and repeated queries, sessions, activity, candidate head and tail, "
                                       "and with --work the test candidates outside the training vocabulary")
    p.add_argument("--logs", required=True, help="logs in the project's schema (validated as build validates them)")
    p.add_argument("--out", required=True, help="directory for profile.json, profile.md and the plots")
    p.add_argument("--work", help="a build of these logs: adds the test candidates outside its training vocabulary")
    p.add_argument("--warmup-days", type=non_negative_int, default=7,
                   help="days before the first-time query share is counted: at the log's start every query looks new (default 7)")
    p.add_argument("--bad-rows", choices=("error", "skip"), default="error", help="as build's --bad-rows (default error)")
    p.set_defaults(handler=cmd_profile)


def _add_evaluate_command(sub) -> None:
    """``dropdown-rank evaluate``: the report's slices, intervals and days."""
    p = sub.add_parser("evaluate", help="sliced AUC/GAUC/logloss with intervals, storage and plots for trained runs")
    p.add_argument("--data", required=True, help="the work directory the runs were trained on")
    p.add_argument("--runs", required=True, nargs="+", help="run directories to compare")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--bootstrap", type=positive_int, default=1000, help="bootstrap replicates over users (default 1000)")
    p.add_argument("--activity-edges", type=int, nargs="+", default=None,
                   help="user-activity bucket edges, used as given (default 5 20 50: 0-4 / 5-19 / 20-49 / 50+, or the requests' "
                        "activity quartiles when one of those buckets has fewer than 30 users)")
    p.add_argument("--pv-edges", type=int, nargs="+", default=None,
                   help="candidate-PV bucket edges (default: test-impression tertiles, tail/torso/head)")
    p.add_argument("--fresh-days", type=positive_int, default=None,
                   help="a candidate that entered the query vocabulary less than this many days before the request is fresh "
                        "(default 7)")
    p.add_argument("--no-storage", action="store_true", help="skip writing files to measure storage")
    p.add_argument("--split", choices=("test", "valid"), default="test",
                   help="the days to report on: test (default), or valid, where model choices are made")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.set_defaults(handler=cmd_evaluate)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dropdown-rank", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a synthetic dropdown world (events, impressions, truth)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", choices=SCALE_CHOICES, default="default",
                   help="tiny, small, default (a catalog with a life cycle), or static (the default world until 2026-12-04)")
    p.add_argument("--birth-share", type=_share, default=None,
                   help="share of the query catalog born during the period, half of it trending for a few days (default: "
                        "the scale's, 0.02 in default and 0 in the others, where every query exists from day one)")
    p.add_argument("--death-share", type=_share, default=None,
                   help="share of the other queries that fade out and die during the period (default: the scale's, 0.3 in "
                        "default and 0 in the others)")
    p.set_defaults(handler=cmd_synth)

    p = sub.add_parser("bestbuy", help="convert the Best Buy search→click log into the log schema")
    p.add_argument("--src", required=True, help="directory with train.csv and test.csv")
    p.add_argument("--out", required=True)
    p.add_argument("--prefix-len", type=positive_int, default=3, help="prefix length of reconstructed requests (default 3)")
    p.add_argument("--candidates", type=positive_int, default=8, help="candidates per reconstructed request (default 8)")
    p.set_defaults(handler=cmd_bestbuy)

    _add_aol_command(sub)

    p = sub.add_parser("build", help="split, vocabularies, q2q/i2i neighbor tables and samples from logs",
                       usage="%(prog)s --logs DIR --out WORK [options] [--engine memory|beam] [-- BEAM_PIPELINE_OPTIONS...]")
    p.add_argument("--logs", required=True, help="directory with events and impressions (.parquet or .csv)")
    p.add_argument("--out", required=True, help="work directory to write")
    p.add_argument("--engine", choices=("memory", "beam"), default="memory",
                   help="memory (default: pandas in this process, for logs that fit in memory) or beam (Apache Beam; "
                        "local FnApiRunner unless the options after -- choose another runner)")
    p.add_argument("beam_args", nargs="*", metavar="BEAM_PIPELINE_OPTIONS",
                   help="after --: Beam pipeline options, e.g. -- --direct_num_workers=2 --direct_running_mode=multi_processing")
    _add_build_args(p)
    p.set_defaults(handler=cmd_build)

    p = sub.add_parser("train", help="train one ranker (base, hgcn, gat) with Keras fit")
    p.add_argument("--data", required=True, help="work directory written by `build`")
    p.add_argument("--out", required=True, help="run directory to write (on a cluster: one every task sees)")
    p.add_argument("--strategy", choices=["auto", "parameter-server"], default="auto",
                   help="auto: one process, or MultiWorkerMirroredStrategy when TF_CONFIG lists workers; parameter-server: "
                        "ParameterServerStrategy over TF_CONFIG's chief, worker and ps tasks (README, Training on a cluster)")
    p.add_argument("--min-shard-bytes", type=positive_int, default=None,
                   help="parameter-server: split variables of at least this size by rows over the ps tasks (default 1 MiB)")
    _add_model_args(p)
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("train-daily", help="train one ranker a day at a time, one pass per day, from scratch or continuing "
                                           "an earlier daily run (--from)")
    p.add_argument("--data", required=True, help="work directory written by `build`")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--from", dest="parent", default=None, metavar="RUN",
                   help="a finished train-daily run to continue: its weights and optimizer state, then the training days after its last")
    p.add_argument("--days", type=positive_int, default=None, help="train at most this many days (default: every training day left)")
    p.add_argument("--no-daily-validation", action="store_true", help="skip the exact validation AUC after each day")
    _add_model_args(p, epochs=False)
    p.set_defaults(handler=cmd_train_daily)

    _add_evaluate_command(sub)

    p = sub.add_parser("export", help="write a TF SavedModel that scores raw string features")
    p.add_argument("--run", required=True, help="a trained run directory")
    p.add_argument("--out", required=True, help="SavedModel directory to write")
    p.add_argument("--graph", help="work directory whose neighbor tables replace the run's (a new day's graph); refused when it "
                                   "gives neighbors to less than half the share of the run's ids its own graph did")
    p.add_argument("--force-graph", action="store_true", help="export with --graph even below that coverage")
    p.add_argument("--precompute-context", action="store_true",
                   help="store every node's graph context as a table: serving gathers instead of aggregating")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if it is not an earlier export (by default only an earlier export, or an "
                        "empty directory, is replaced)")
    p.set_defaults(handler=cmd_export)

    _add_log_checks(sub)

    p = sub.add_parser("demo", help="run the whole job end to end on the synthetic world")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--scale", choices=SCALE_CHOICES, default="default")
    _add_build_args(p)
    _add_model_args(p, choose_model=False)
    p.set_defaults(handler=cmd_demo)
    return parser


def _user_error(error: BaseException) -> bool:
    """A mistake in the user's input, reported in one line: the library's own ValueErrors, and missing files."""
    if os.environ.get("DROPDOWN_RANK_TRACEBACK") == "1":
        return False
    if isinstance(error, FileNotFoundError):
        return True
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and PACKAGE_DIR in Path(frames[-1].filename).resolve().parents


def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    command = f"dropdown-rank {args.command}"
    out = getattr(args, "out", None)
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        print(f"{command}: error: --out {out} is a file; give a directory", file=sys.stderr)
        return 2
    try:
        code = args.handler(args)
    except (ValueError, FileNotFoundError) as error:
        if not _user_error(error):
            raise
        message = " ".join(str(error).splitlines())
        print(f"{command}: error: {message}", file=sys.stderr)
        return 2
    return code or 0  # a command that ran but found a problem (replay: a mismatch) returns 1


if __name__ == "__main__":
    sys.exit(main())
