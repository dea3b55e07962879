"""Evaluation: exact sliced metrics with user-bootstrap intervals, storage accounting, reports.

``metrics`` (exact AUC, GAUC, logloss, vectorized over replicates) → ``bootstrap`` (intervals and
paired differences) ← ``slices`` (activity / PV buckets); ``storage`` measures training-data bytes;
``plots`` and ``markdown`` render; ``report`` runs it all for ``dropdown-rank evaluate``.
"""
