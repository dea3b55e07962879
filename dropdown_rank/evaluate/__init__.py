"""Evaluation: exact sliced metrics with seed-aware user-bootstrap intervals, baselines, OOV, storage, reports.

``metrics`` (exact AUC, GAUC, logloss, MRR, NDCG@10, vectorized over replicates) → ``bootstrap``
(seed-averaged intervals, paired differences and the ``*`` rule) ← ``slices`` (activity / PV /
candidate neighbor-degree buckets); ``oov`` (vocabulary coverage per slice); ``storage`` measures training-data bytes;
``plots`` and ``markdown`` render; ``report`` runs it all for ``dropdown-rank evaluate``. ``profile`` is the
log's own report (``dropdown-rank profile``): the figures that say where a graph can help.
"""
