"""``dropdown-rank``: the command line. Each subcommand is one stage; ``demo`` chains them.

Stage modules are imported inside the handlers so that ``--help`` and argument errors answer
without loading TensorFlow.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _add_build_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("split")
    g.add_argument("--valid-days", type=int, default=3, help="days of validation before the test period (default 3)")
    g.add_argument("--test-days", type=int, default=3, help="last days of the log used for test (default 3)")
    g.add_argument("--train-days", type=int, default=None, help="training days before validation (default: all earlier days)")
    g = parser.add_argument_group("graph")
    g.add_argument("--neighbors", type=int, default=10, help="top-K neighbors kept per node (default 10)")
    g.add_argument("--cooccurrence", choices=("session", "window"), default="session",
                   help="count pairs inside a session (default) or within --window-minutes")
    g.add_argument("--session-gap-minutes", type=float, default=30.0, help="a gap longer than this ends a session (default 30)")
    g.add_argument("--window-minutes", type=float, default=60.0, help="pair window in window mode (default 60)")
    g.add_argument("--max-distance", type=int, default=10, help="pairs at most this many same-kind behaviors apart (default 10)")
    g.add_argument("--min-cooccur", type=int, default=1, help="drop edges seen fewer times (default 1)")
    g.add_argument("--min-weight", type=float, default=0.0, help="drop edges with a smaller normalized weight (default 0)")
    g = parser.add_argument_group("samples")
    g.add_argument("--seq-len", type=int, default=50, help="history length stored per sample; models read a prefix (default 50)")
    g.add_argument("--lookback-days", type=float, default=30.0, help="window for the activity slice field (default 30)")
    g.add_argument("--min-count", type=int, default=1, help="vocabulary minimum count in the training period (default 1)")
    g.add_argument("--bad-rows", choices=("error", "skip"), default="error",
                   help="on a bad row: stop with an error (default), or skip it and count it in stats.json")


def _build_config(args):
    from dropdown_rank.build import BuildConfig
    from dropdown_rank.graph import GraphConfig
    from dropdown_rank.samples import SampleConfig
    from dropdown_rank.split import SplitConfig

    return BuildConfig(
        split=SplitConfig(args.valid_days, args.test_days, args.train_days),
        graph=GraphConfig(
            neighbors=args.neighbors, mode=args.cooccurrence, session_gap_minutes=args.session_gap_minutes,
            window_minutes=args.window_minutes, max_distance=args.max_distance, min_count=args.min_cooccur,
            min_weight=args.min_weight,
        ),
        samples=SampleConfig(max_len=args.seq_len, lookback_days=args.lookback_days),
        min_count=args.min_count,
        bad_rows=args.bad_rows,
    )


def cmd_synth(args) -> None:
    from dropdown_rank.logs.synth import write_world

    write_world(args.out, scale=args.scale, seed=args.seed)


def cmd_bestbuy(args) -> None:
    from dropdown_rank.logs.bestbuy import convert_bestbuy

    convert_bestbuy(args.src, args.out, prefix_len=args.prefix_len, candidates=args.candidates)


def cmd_build(args) -> None:
    from dropdown_rank.build import build

    build(args.logs, args.out, _build_config(args))


def _add_model_args(parser: argparse.ArgumentParser, choose_model: bool = True) -> None:
    g = parser.add_argument_group("model")
    if choose_model:  # demo trains fixed models and uses --seq-len for the stored length
        g.add_argument("--model", choices=("base", "hgcn", "attention"), default="base", help="ranker kind (default base)")
        g.add_argument("--seq-len", type=int, default=20, help="history length L the model reads (default 20)")
    g.add_argument("--id-time-only", action="store_true", help="GNN neighbors carry only id and time features (no weights)")
    g.add_argument("--graph-impl", choices=("fused", "spektral"), default="fused",
                   help="fused layers (default, faster) or spektral GCNConv/GATConv over star subgraphs (same function)")
    g.add_argument("--dim", type=int, default=16, help="embedding size (default 16)")
    g.add_argument("--heads", type=int, default=1, help="attention heads of the attention GNN (default 1)")
    g.add_argument("--position-bias", action="store_true",
                   help="train with a PAL position-bias tower; serving scores ignore position")
    g = parser.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=4, help="maximum epochs; early stopping on exact val AUC (default 4)")
    g.add_argument("--batch-size", type=int, default=1024)
    g.add_argument("--learning-rate", type=float, default=1e-3)
    g.add_argument("--patience", type=int, default=1, help="epochs without val AUC gain before stopping (default 1)")
    g.add_argument("--seed", type=int, default=0, help="fixes initialization and shuffling")


def _model_config(args, **override):
    from dropdown_rank.model import ModelConfig

    values = dict(id_time_only=args.id_time_only, graph_impl=args.graph_impl, dim=args.dim, heads=args.heads,
                  position_bias=args.position_bias)
    if hasattr(args, "model"):
        values.update(kind=args.model, seq_len=args.seq_len)
    values.update(override)
    return ModelConfig(**values)


def _train_config(args):
    from dropdown_rank.train import TrainConfig

    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                       patience=args.patience, seed=args.seed)


def cmd_train(args) -> None:
    from dropdown_rank.train import train

    train(args.data, args.out, _model_config(args), _train_config(args))


def cmd_evaluate(args) -> None:
    from dropdown_rank.evaluate.report import evaluate
    from dropdown_rank.evaluate.slices import SliceConfig

    config = SliceConfig(activity_edges=tuple(args.activity_edges), pv_edges=tuple(args.pv_edges) if args.pv_edges else None)
    evaluate(args.data, args.runs, args.out, config, replicates=args.bootstrap, seed=args.seed, storage=not args.no_storage)


def cmd_export(args) -> None:
    from dropdown_rank.export import export

    export(args.run, args.out, graph_dir=args.graph, precompute_context=args.precompute_context)


def score_example(saved_model_dir: Path) -> list:
    """Load a SavedModel the way a serving process would and score its example request."""
    import json

    import tensorflow as tf

    from dropdown_rank.export import instances_to_tensors

    model = tf.saved_model.load(str(saved_model_dir))
    body = json.loads((saved_model_dir / "serving_example.json").read_text())
    scores = model.signatures["serving_default"](**instances_to_tensors(body))["ctr"].numpy()
    return [(i["candidate"], float(s)) for i, s in zip(body["instances"], scores)]


def cmd_demo(args) -> None:
    """synth → build → train base_20 and hgcn_20 → evaluate → export hgcn_20 and score a request."""
    from dropdown_rank.build import build
    from dropdown_rank.evaluate.report import evaluate
    from dropdown_rank.export import export
    from dropdown_rank.logs.synth import write_world
    from dropdown_rank.train import train

    out = Path(args.out)
    timings, aucs = {}, {}

    def stage(name, fn, *fn_args, **fn_kwargs):
        started = time.perf_counter()
        result = fn(*fn_args, **fn_kwargs)
        timings[name] = time.perf_counter() - started
        return result

    stage("synth", write_world, out / "logs", scale=args.scale, seed=args.seed)
    stage("build", build, out / "logs", out / "work", _build_config(args))
    for kind in ("base", "hgcn"):
        config = _model_config(args, kind=kind, seq_len=20)
        aucs[config.name] = stage(f"train {config.name}", train, out / "work", out / "runs" / config.name, config,
                                  _train_config(args))["test_auc"]
    stage("evaluate", evaluate, out / "work", [out / "runs" / name for name in aucs], out / "report", seed=args.seed)
    stage("export hgcn_20", export, out / "runs" / "hgcn_20", out / "export" / "hgcn_20")
    scored = stage("score via SavedModel", score_example, out / "export" / "hgcn_20")
    print("\ndemo results (exact test AUC):")
    for name, value in aucs.items():
        print(f"  {name}: {value:.4f}")
    print(f"one dropdown request scored by the loaded SavedModel ({out / 'export' / 'hgcn_20'}):")
    for candidate, score in scored:
        print(f"  {score:.4f}  {candidate}")
    print("demo outputs:")
    print(f"  logs (synthetic world): {out / 'logs'}")
    print(f"  work (graph, samples, stats.json): {out / 'work'}")
    print(f"  runs: {out / 'runs'}")
    print(f"  report: {out / 'report' / 'report.md'}")
    print(f"  SavedModel: {out / 'export' / 'hgcn_20'} (model_card.json, serving_example.json)")
    print("demo stage times: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dropdown-rank", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a synthetic dropdown world (events, impressions, truth)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", choices=("tiny", "small", "default"), default="default")
    p.set_defaults(handler=cmd_synth)

    p = sub.add_parser("bestbuy", help="convert the Best Buy search→click log into the log schema")
    p.add_argument("--src", required=True, help="directory with train.csv and test.csv")
    p.add_argument("--out", required=True)
    p.add_argument("--prefix-len", type=int, default=3, help="prefix length of reconstructed requests (default 3)")
    p.add_argument("--candidates", type=int, default=8, help="candidates per reconstructed request (default 8)")
    p.set_defaults(handler=cmd_bestbuy)

    p = sub.add_parser("build", help="split, vocabularies, q2q/i2i neighbor tables and samples from logs")
    p.add_argument("--logs", required=True, help="directory with events and impressions (.parquet or .csv)")
    p.add_argument("--out", required=True, help="work directory to write")
    _add_build_args(p)
    p.set_defaults(handler=cmd_build)

    p = sub.add_parser("train", help="train one ranker (base, hgcn, attention) with Keras fit")
    p.add_argument("--data", required=True, help="work directory written by `build`")
    p.add_argument("--out", required=True, help="run directory to write")
    _add_model_args(p)
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("evaluate", help="sliced AUC/GAUC/logloss with intervals, storage and plots for trained runs")
    p.add_argument("--data", required=True, help="the work directory the runs were trained on")
    p.add_argument("--runs", required=True, nargs="+", help="run directories to compare")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates over users (default 1000)")
    p.add_argument("--activity-edges", type=int, nargs="+", default=[5, 20, 50],
                   help="user-activity bucket edges (default 5 20 50: 0-4 / 5-19 / 20-49 / 50+)")
    p.add_argument("--pv-edges", type=int, nargs="+", default=None,
                   help="candidate-PV bucket edges (default: test-impression tertiles, tail/torso/head)")
    p.add_argument("--no-storage", action="store_true", help="skip writing files to measure storage")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("export", help="write a TF SavedModel that scores raw string features")
    p.add_argument("--run", required=True, help="a trained run directory")
    p.add_argument("--out", required=True, help="SavedModel directory to write")
    p.add_argument("--graph", help="work directory whose neighbor tables replace the run's (a new day's graph)")
    p.add_argument("--precompute-context", action="store_true",
                   help="store every node's graph context as a table: serving gathers instead of aggregating")
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("demo", help="run the whole job end to end on the synthetic world")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--scale", choices=("tiny", "small", "default"), default="default")
    _add_build_args(p)
    _add_model_args(p, choose_model=False)
    p.set_defaults(handler=cmd_demo)
    return parser


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    from dropdown_rank.logs.schema import SchemaError

    try:
        args.handler(args)
    except (SchemaError, FileNotFoundError) as error:
        print(f"dropdown-rank {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
