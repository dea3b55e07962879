"""``dropdown-rank build --engine beam``: the build on Apache Beam, for logs larger than one machine's memory.

It writes the same work directory as :func:`dropdown_rank.build.build` (the in-memory engine, the default for
logs that fit in memory), and calls the same functions for the per-user and per-chunk work: validation
(``logs.schema.check_rows`` / ``check_table``), vocabularies (``vocab.occurrence_summary`` ...), sessions and pair
counts (``graph.relation_pairs``), snapshots (``graph.snapshot_edges`` / ``top_k`` / ``table_from_top_k``) and
samples (``samples.Histories`` / ``sample_table``). Beam adds the keying, grouping and combining. See
``engine.py`` (the driver), ``validate.py`` (pipeline 1) and ``pipeline.py`` (pipeline 2).
"""
import logging

# apache_beam warns at import that the BigQuery client libraries are missing (they are, and unused here).
logging.disable(logging.WARNING)
try:
    import apache_beam  # noqa: F401
finally:
    logging.disable(logging.NOTSET)

from dropdown_rank.beam.engine import build_beam  # noqa: E402

__all__ = ["build_beam"]
