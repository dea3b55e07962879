"""Data stages at a scale: synth, graph build and sample build; events/second and peak memory.

The sample stage also reports the bytes of the Parquet shards and of their training records, and
re-encodes the records alone (``records_rewrite_seconds``) to show their share of the stage time.

    python benchmarks/bench_data.py [--scale static] [--out results/data.json]

Each stage runs in its own process, so its peak resident memory (ru_maxrss) is its own.
"""
from __future__ import annotations

import json
import tempfile

from common import bench_parser, run_python, write_result

STAGE = r"""
import json, resource, sys, time
import dropdown_rank
stage, scale, root = sys.argv[1], sys.argv[2], sys.argv[3]
from dropdown_rank.logs.synth import write_world
started = time.perf_counter()
if stage == "synth":
    summary = write_world(root + "/logs", scale=scale, seed=0, progress=lambda *a: None)
    out = {"events": summary["events"], "impressions": summary["impressions"]}
else:
    import pandas as pd
    from dropdown_rank.build import BuildConfig
    from dropdown_rank.graph import build_graphs
    from dropdown_rank.logs.schema import load_logs
    from dropdown_rank.samples import build_samples
    from dropdown_rank.split import time_split
    from dropdown_rank.vocab import build_vocabularies
    logs = load_logs(root + "/logs")
    config = BuildConfig()
    split = time_split(logs.impressions["ts"].to_numpy(), config.split)
    split_of = split.assign(logs.impressions["ts"].to_numpy())
    train = logs.events[(logs.events["ts"] >= split.train_start) & (logs.events["ts"] < split.valid_start)]
    vocabs = build_vocabularies(train, logs.impressions[split_of == "train"])
    loaded = time.perf_counter()
    if stage == "graph":
        graph_events = logs.events[(logs.events["ts"] >= split.train_start) & (logs.events["ts"] < split.test_end)]
        build_graphs(graph_events, vocabs, split.snapshot_days(), config.graph, progress=lambda *a: None)
        out = {"events": len(graph_events), "snapshots": len(split.snapshot_days()), "note": "every daily q2q and i2i snapshot the build makes"}
    else:
        pv = logs.impressions[split_of == "train"]["candidate"].value_counts()
        build_samples(logs.events, logs.impressions, split_of, pv, root + "/samples", config.samples, progress_bar=False)
        done = time.perf_counter()
        import glob, os
        import pyarrow.parquet as pq
        from dropdown_rank.features import record_path
        from dropdown_rank.records import write_records
        shards = sorted(glob.glob(root + "/samples/*/part-*.parquet"))
        rows, clock = 0, time.perf_counter()
        for shard in shards:  # the records again, timed alone: their share of the stage
            table = pq.read_table(shard)
            rows += table.num_rows
            write_records(table, root + "/rewrite.tfrecord.gz")
        out = {"events": len(logs.events), "impressions": len(logs.impressions), "sample_rows": rows,
               "records_rewrite_seconds": round(time.perf_counter() - clock, 2),
               "parquet_bytes": sum(os.path.getsize(f) for f in shards),
               "records_bytes": sum(os.path.getsize(record_path(f)) for f in shards)}
        out["records_us_per_row"] = round(out["records_rewrite_seconds"] / rows * 1e6, 1)
        out["seconds_stage"] = done - loaded
    out["load_seconds"] = loaded - started
    started = loaded
out["seconds"] = out.pop("seconds_stage") if "seconds_stage" in out else time.perf_counter() - started
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def main(argv=None):
    parser = bench_parser(__doc__)
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as root:
        for stage in ("synth", "graph", "samples"):
            done = run_python(STAGE, stage, args.scale, root)
            if done.returncode != 0:
                raise SystemExit(done.stderr[-3000:])
            results[stage] = json.loads(done.stdout.strip().splitlines()[-1])
            per_second = results[stage]["events"] / results[stage]["seconds"]
            results[stage]["events_per_second"] = round(per_second, 1)
            print(f"{stage}: {results[stage]['seconds']:.1f}s, {per_second:,.0f} events/s, peak {results[stage]['peak_rss_mb']:.0f} MB")
    write_result("data", {"scale": args.scale, "stages": results}, args.out)


if __name__ == "__main__":
    main()
