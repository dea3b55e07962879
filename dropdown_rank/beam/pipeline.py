"""Pipeline 2: vocabularies, daily q2q/i2i snapshots and samples from the clean, user-partitioned logs.

The split is known (the driver computed it from pipeline 1's hourly counts), so it is a constant of the pipeline.
Every per-user step reads one user bucket's events and impressions and calls the in-memory build's functions:

* **vocabularies**: ``ParDo(VocabSummaries)`` (``vocab.vocabulary_occurrences`` + ``occurrence_summary`` of the
  bucket's training-period rows, keyed by a bucket of the tokens) → ``CombinePerKey(merge_summaries)`` →
  ``vocabulary_frame`` per token bucket → ``GroupByKey`` per vocabulary → ``order_vocabulary``. Candidate PV is
  counted the same way. Both reach the later steps as a side input (``AsDict``), as does each vocabulary's size.
* **graph**: ``ParDo(RelationPairs)`` (``graph.relation_pairs``: sessions cut at midnight, per-day pair counts),
  keyed by (relation, bucket of the source node) → ``GroupByKey`` → ``ParDo(TopK)``: ``merge_pairs``, then for every
  snapshot day, ``snapshot_edges`` (trailing window, known tokens) and ``top_k`` (weights, thresholds, top K),
  exact per source node → keyed by (relation, snapshot) → ``GroupByKey`` → ``ParDo(WriteSnapshot)``
  (``graph.table_from_top_k``) → ``GroupByKey`` per relation → ``ParDo(WriteTables)``: the snapshots read day by day
  into the changed rows (``tables.SnapshotChanges``), saved as the same ``.npz`` the in-memory build writes.
* **candidate counters**: ``ParDo(DailyCounts)`` (``counters.daily_counts`` of the bucket's events and impressions,
  keyed by a bucket of the candidate text) → ``CombinePerKey(SumDaily)``: per-(candidate, day) counts, a side input
  (``AsList``) from which each sample worker builds ``counters.CandidateDays``.
* **samples**: ``ParDo(SampleRows)`` (``samples.Histories`` + ``sample_table``: histories strictly before each
  request, activity, candidate PV, the point-in-time counters), rows cut at the in-memory build's shard boundaries (each row's index in its
  split comes from its hour's offset and its rank in the hour) → keyed by (split, shard) → ``GroupByKey`` →
  ``ParDo(WriteShard)``: ``samples/<split>/part-NNNNN.parquet``, rows in the in-memory build's order. Sample rows
  are large, so they travel as references to Arrow IPC files, not as elements.

Pair counts and kept edges cross their ``GroupByKey`` the same way (``common.StashFile``): the local runner holds a
grouping step's input in its own memory, so only small results travel as elements.
"""
from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa

from dropdown_rank._io import atomic_path, write_parquet
from dropdown_rank.beam.common import KEYED, HOUR, StashFile, bucket_of, dump, read_bucket, split_by, stash, to_arrow, unstash
from dropdown_rank.graph import GraphConfig, merge_pairs, relation_pairs, snapshot_edges, table_from_top_k, top_k
from dropdown_rank.tables import RELATIONS, ROW_FIELDS, SnapshotChanges
from dropdown_rank.counters import CandidateDays, daily_counts, sum_daily
from dropdown_rank.samples import SampleConfig, Histories, sample_table, write_shard
from dropdown_rank.split import TimeSplit
from dropdown_rank.vocab import (VOCABULARIES, merge_summaries, occurrence_summary, order_vocabulary, vocabulary_frame,
                                 vocabulary_occurrences)

PV = "candidate_pv"
_KEPT_COLUMNS = ["src", "dst", "count", "last_ts", "weight", "rank"]


@beam.typehints.with_output_types(KEYED)
class VocabSummaries(beam.DoFn):
    """Per user bucket: what the vocabularies and candidate PV count, summarized, keyed by token bucket."""

    def __init__(self, tmp: str, split: TimeSplit, min_count: int, buckets: int):
        self.tmp, self.split, self.min_count, self.buckets = tmp, split, min_count, buckets

    def process(self, bucket):
        events = read_bucket(self.tmp, "events", bucket)
        impressions = read_bucket(self.tmp, "impressions", bucket)
        train_events = events[self.split.in_training_period(events["ts"].to_numpy())]
        train_impressions = impressions[self.split.in_training_period(impressions["ts"].to_numpy())]
        graph = self.split.in_graph_period(events["ts"].to_numpy())
        yield beam.pvalue.TaggedOutput("small", ("events", len(events), len(train_events), int(graph.sum())))
        occurrences = vocabulary_occurrences(train_events, train_impressions)
        occurrences[PV] = (train_impressions["candidate"].to_numpy(dtype=object), train_impressions["ts"].to_numpy(dtype=np.int64))
        for name, (tokens, ts) in occurrences.items():
            counts, earliest = occurrence_summary(tokens, ts, self.min_count if name != PV else 0)
            earliest_parts = dict(split_by(earliest, bucket_of(earliest["token"].to_numpy(), self.buckets)))
            for token_bucket, part in split_by(counts, bucket_of(counts.index.to_numpy(), self.buckets)):
                yield (name, token_bucket), (part, earliest_parts.get(token_bucket, earliest.iloc[:0]))


class MergeSummaries(beam.CombineFn):
    def __init__(self, min_count: int):
        self.min_count = min_count

    def create_accumulator(self):
        return []

    def add_input(self, accumulator, summary):
        accumulator.append(summary)
        return self._compact(accumulator)

    def merge_accumulators(self, accumulators):
        return self._compact([s for a in accumulators for s in a], force=True)

    def extract_output(self, accumulator):
        return self._compact(accumulator, force=True)[0] if accumulator else None

    def _compact(self, accumulator, force: bool = False):
        if len(accumulator) > 1 and (force or len(accumulator) >= 16):
            return [merge_summaries(accumulator, self.min_count)]
        return accumulator


def _finish_vocabulary(element, min_count: int):
    (name, _), (counts, earliest) = element
    if name == PV:
        return name, counts
    return name, vocabulary_frame(counts, earliest, min_count)


def _empty_vocabulary(name: str):
    """A vocabulary (or the candidate PV) with no token: present even when nothing is counted."""
    if name == PV:
        return pd.Series([], dtype=np.int64, index=pd.Index([], dtype=object), name="count")
    return pd.DataFrame({"token": pd.Series([], dtype=object), "count": pd.Series([], dtype=np.int64),
                         "known_since": pd.Series([], dtype=np.int64)})


def _concat_vocabulary(element):
    name, parts = element
    parts = [p for p in parts if len(p)] or [_empty_vocabulary(name)]
    if name == PV:
        return name, pd.concat(parts).groupby(level=0, sort=False).sum()
    return name, order_vocabulary(pd.concat(parts, ignore_index=True))


class WriteVocabulary(beam.DoFn):
    def __init__(self, work_dir: str):
        self.work_dir = work_dir

    def process(self, element):
        name, frame = element
        if name in VOCABULARIES:
            write_parquet(Path(self.work_dir) / "vocab" / f"{name}.parquet", frame)
            yield "vocab", name, len(frame)


@beam.typehints.with_output_types(KEYED)
class RelationPairs(beam.DoFn):
    """Per user bucket: daily pair counts of each relation, keyed by (relation, bucket of the source node)."""

    def __init__(self, tmp: str, split: TimeSplit, config: GraphConfig, buckets: int):
        self.tmp, self.split, self.config, self.buckets = tmp, split, config, buckets

    def process(self, bucket, vocabs):
        events = read_bucket(self.tmp, "events", bucket)
        events = events[self.split.in_graph_period(events["ts"].to_numpy())].drop(columns="_row")
        for relation, (pairs, behaviors, outside) in relation_pairs(events, vocabs, self.config):
            yield beam.pvalue.TaggedOutput("small", ("behaviors", relation, behaviors, outside))
            for source_bucket, ref in stash(self.tmp, "pairs", to_arrow(pairs), pairs["src"].to_numpy() % self.buckets):
                yield (relation, source_bucket), ref


@beam.typehints.with_output_types(KEYED)
class TopK(beam.DoFn):
    """Per (relation, source-node bucket): its pairs from every user bucket merged (``graph.merge_pairs``), then each
    snapshot's kept edges, saved to a scratch file and keyed by (relation, snapshot index) as ``(ref, edges before)``."""

    def __init__(self, tmp: str, snapshot_days: np.ndarray, config: GraphConfig):
        self.tmp, self.snapshot_days, self.config = tmp, [int(d) for d in snapshot_days], config

    def process(self, element, vocabs):
        (relation, _), refs = element
        pairs = merge_pairs([table.to_pandas() for table in unstash(refs)])
        known_since = vocabs[RELATIONS[relation][1]]["known_since"].to_numpy(dtype=np.int64)
        found = []
        with StashFile(self.tmp, "kept") as file:
            for index, day in enumerate(self.snapshot_days):
                kept, before = top_k(snapshot_edges(pairs, day, known_since, self.config.window_days), self.config)
                if before:
                    found.append(((relation, index), (file.add(to_arrow(kept[_KEPT_COLUMNS])) if len(kept) else None, before)))
        yield from found


def _no_edges():
    return pd.DataFrame({c: pd.Series([], dtype=np.float64 if c == "weight" else np.int64) for c in _KEPT_COLUMNS})


@beam.typehints.with_output_types(KEYED)
class WriteSnapshot(beam.DoFn):
    """One snapshot of one relation: ``graph.table_from_top_k`` of every source bucket's kept edges, saved to a
    scratch file; yields its stats."""

    def __init__(self, tmp: str, snapshot_days: np.ndarray, config: GraphConfig):
        self.tmp, self.snapshot_days, self.config = tmp, [int(d) for d in snapshot_days], config

    def process(self, element, vocabs):
        (relation, index), pieces = element
        pieces = list(pieces)
        tables = unstash(ref for ref, _ in pieces)
        kept = pa.concat_tables(tables).to_pandas() if tables else _no_edges()
        vocab = vocabs[RELATIONS[relation][1]]["token"]
        table, stats = table_from_top_k(kept, sum(b for _, b in pieces), len(vocab), self.config, relation, [""],
                                        self.snapshot_days[index])
        path = _snapshot_path(self.tmp, relation, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as scratch:
            with open(scratch, "wb") as handle:
                np.savez(handle, ids=table.ids, weight=table.weight, last_ts=table.last_ts, count=table.count)
        yield relation, (index, stats)


def _snapshot_path(tmp, relation: str, index: int) -> Path:
    return Path(tmp) / "graph" / relation / f"snapshot-{index:05d}.npz"


class WriteTables(beam.DoFn):
    """A relation's daily tables: its snapshots read in day order into their changed rows, saved as ``graph/<relation>.npz``."""

    def __init__(self, tmp: str, work_dir: str, snapshot_days: np.ndarray):
        self.tmp, self.work_dir, self.snapshot_days = tmp, work_dir, np.asarray(snapshot_days, dtype=np.int64)

    def process(self, element):
        relation, snapshots = element
        stats = dict(snapshots)
        paths = [_snapshot_path(self.tmp, relation, i) for i in range(len(self.snapshot_days))]
        write_daily_npz(Path(self.work_dir) / "graph" / f"{relation}.npz", relation, paths, self.snapshot_days)
        yield "graph", relation, [stats[i] for i in range(len(self.snapshot_days))]


def write_daily_npz(path: Path, relation: str, snapshot_files, snapshot_ts: np.ndarray) -> None:
    """The file ``tables.DailyTables.save`` writes, from the relation's snapshot files read one day at a time
    (``tables.SnapshotChanges``: only the previous day and the changed rows are held). Node strings are not
    stored, so the rows are named by placeholders."""
    changes, rows = SnapshotChanges(relation), 0
    for file, day in zip(snapshot_files, snapshot_ts):
        with np.load(file) as snapshot:
            rows = len(snapshot["ids"])
            changes.add(int(day), *(snapshot[f] for f in ROW_FIELDS))
    changes.finish(np.full(rows, "", dtype=object)).save(path)


@beam.typehints.with_output_types(KEYED)
class DailyCounts(beam.DoFn):
    """Per user bucket: per-(candidate, day) query, impression and click counts, keyed by a bucket of the text."""

    def __init__(self, tmp: str, buckets: int):
        self.tmp, self.buckets = tmp, buckets

    def process(self, bucket):
        counts = daily_counts(read_bucket(self.tmp, "events", bucket), read_bucket(self.tmp, "impressions", bucket))
        yield from split_by(counts, bucket_of(counts["text"].to_numpy(), self.buckets))


class SumDaily(beam.CombineFn):
    def create_accumulator(self):
        return []

    def add_input(self, accumulator, counts):
        accumulator.append(counts)
        return [sum_daily(accumulator)] if len(accumulator) >= 16 else accumulator

    def merge_accumulators(self, accumulators):
        return [sum_daily([c for a in accumulators for c in a])]

    def extract_output(self, accumulator):
        return sum_daily(accumulator)


@beam.typehints.with_output_types(KEYED)
class SampleRows(beam.DoFn):
    """Per user bucket: the sample rows of its impressions, cut at shard boundaries and saved to a scratch Arrow
    file; yields ``((split, shard), (file, batch))`` references (``common.StashFile``)."""

    def __init__(self, tmp: str, split: TimeSplit, hour_offsets: dict, config: SampleConfig):
        self.tmp, self.split, self.hour_offsets, self.config = tmp, split, hour_offsets, config
        self._candidate_days = None

    def process(self, bucket, side, daily):
        impressions = read_bucket(self.tmp, "impressions", bucket)
        names = self.split.assign(impressions["ts"].to_numpy())
        impressions = impressions[names != ""].assign(_split=names[names != ""])
        if not len(impressions):
            return
        hours = impressions["ts"].to_numpy() // HOUR * HOUR
        index = pd.Series(self.hour_offsets, dtype=np.int64).reindex(hours).to_numpy() + impressions["_rank"].to_numpy()
        impressions = impressions.assign(_index=index).sort_values(["_split", "_index"], kind="stable")
        histories = Histories(read_bucket(self.tmp, "events", bucket).drop(columns="_row"), impressions)
        if self._candidate_days is None:  # the side input is the same for every bundle of the pipeline
            self._candidate_days = CandidateDays(sum_daily([frame for _, frame in daily]))
        refs = []
        with StashFile(self.tmp, "samples") as file:
            shard = impressions["_index"].to_numpy() // self.config.shard_rows
            key = pd.factorize(pd.MultiIndex.from_arrays([impressions["_split"].to_numpy(), shard]))[0]
            for _, chunk in split_by(impressions, key):
                table = sample_table(histories, chunk, side[PV], self._candidate_days, self.config)
                table = table.append_column("_index", pa.array(chunk["_index"].to_numpy(), pa.int64()))
                refs.append(((chunk["_split"].iloc[0], int(chunk["_index"].iloc[0] // self.config.shard_rows)), file.add(table)))
        yield from refs


class WriteShard(beam.DoFn):
    """One sample shard: its rows from every user bucket, in the in-memory build's order."""

    def __init__(self, work_dir: str, split_rows: dict, shard_rows: int):
        self.work_dir, self.split_rows, self.shard_rows = work_dir, split_rows, shard_rows

    def process(self, element):
        (split, shard), refs = element
        table = pa.concat_tables(unstash(refs)).sort_by("_index")
        expected = min(self.shard_rows, self.split_rows[split] - shard * self.shard_rows)
        first = shard * self.shard_rows
        if table.num_rows != expected or table["_index"][0].as_py() != first:
            raise RuntimeError(f"samples/{split} shard {shard}: {table.num_rows} rows from index {table['_index'][0]}, "
                               f"expected {expected} from {first}")
        write_shard(table.drop_columns(["_index"]).combine_chunks(), Path(self.work_dir) / "samples", split, shard)
        yield "samples", split, shard, table.num_rows


def build_pipeline(pipeline: beam.Pipeline, tmp: str, work_dir: str, buckets: int, split: TimeSplit, hour_offsets: dict,
                   split_rows: dict, config) -> None:
    """``config`` is the :class:`dropdown_rank.build.BuildConfig`."""
    snapshot_days = split.snapshot_days()
    key_buckets = min(buckets, 16)  # of tokens and of graph nodes: far fewer rows than the events
    user_buckets = pipeline | "user buckets" >> beam.Create(list(range(buckets)), reshuffle=True)

    summaries = user_buckets | "vocab summaries" >> beam.ParDo(VocabSummaries(tmp, split, config.min_count, key_buckets)).with_outputs("small", main="summaries")
    per_token_bucket = (summaries.summaries
                        | "merge summaries" >> beam.CombinePerKey(MergeSummaries(config.min_count))
                        | "per token bucket" >> beam.Map(_finish_vocabulary, config.min_count))
    empty = pipeline | "every vocabulary" >> beam.Create([(name, _empty_vocabulary(name)) for name in VOCABULARIES + (PV,)])
    vocabs = ((per_token_bucket, empty)
              | "vocabulary parts" >> beam.Flatten()
              | "group vocabulary" >> beam.GroupByKey()
              | "order vocabulary" >> beam.Map(_concat_vocabulary))
    vocab_written = vocabs | "write vocabulary" >> beam.ParDo(WriteVocabulary(work_dir))
    side = beam.pvalue.AsDict(vocabs)

    pairs = user_buckets | "pairs" >> beam.ParDo(RelationPairs(tmp, split, config.graph, key_buckets), side).with_outputs("small", main="pairs")
    seeds = pipeline | "every snapshot" >> beam.Create(
        [((relation, i), (None, 0)) for relation in RELATIONS for i in range(len(snapshot_days))])
    kept = (pairs.pairs
            | "group pairs" >> beam.GroupByKey()
            | "top k" >> beam.ParDo(TopK(tmp, snapshot_days, config.graph), side))
    graph_written = ((kept, seeds)
                     | "all snapshot pieces" >> beam.Flatten()
                     | "group by snapshot" >> beam.GroupByKey()
                     | "write snapshot" >> beam.ParDo(WriteSnapshot(tmp, snapshot_days, config.graph), side)
                     | "group by relation" >> beam.GroupByKey()
                     | "write tables" >> beam.ParDo(WriteTables(tmp, work_dir, snapshot_days)))

    daily = (user_buckets
             | "daily counts" >> beam.ParDo(DailyCounts(tmp, key_buckets))
             | "sum daily counts" >> beam.CombinePerKey(SumDaily()))
    samples_written = (user_buckets
                       | "sample rows" >> beam.ParDo(SampleRows(tmp, split, hour_offsets, config.samples), side,
                                                     beam.pvalue.AsList(daily))
                       | "group by shard" >> beam.GroupByKey()
                       | "write shards" >> beam.ParDo(WriteShard(work_dir, split_rows, config.samples.shard_rows)))

    _ = ((summaries.small, pairs.small, vocab_written, graph_written, samples_written)
         | "small results" >> beam.Flatten()
         | "collect" >> beam.combiners.ToList()
         | "write results" >> beam.Map(dump, str(Path(tmp) / "build.pkl")))
