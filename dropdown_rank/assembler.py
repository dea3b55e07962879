"""A reference online feature assembler: the SavedModel's inputs computed the way a serving system would.

The build computes every sample row in bulk from the whole log (``samples.py``, ``counters.py``). A
serving system sees the log as a stream and must answer one request at a time from the state it
kept. :class:`FeatureAssembler` is that serving side, written plainly as the reference a team can
port or check its own against: it ingests the event and impression streams in time order and
answers "features for this request" with exactly the model's inputs (``features.MODEL_INPUTS``),
under the build's rules:

* **histories**: the user's last ``max_len`` queries and last ``max_len`` clicked items strictly
  before ``request_ts``, most recent first; behaviors in the request's own second are left out
  (they may be ingested before the request is answered); ties in time keep the order they came in;
* **personal counters**: the user's queries equal to the candidate in the ``personal_days`` before
  ``request_ts`` and seconds since the latest of them (-1: none);
* **popularity counters**: the candidate's query events, dropdown impressions and clicks summed
  over the ``popularity_days`` whole UTC days before the request's day, refreshed once a day (the
  request's own day never counts);
* **unseen** users and candidates: empty histories, zero counts, age -1. Ids are verbatim, as in
  the build (README, Serving: normalize before both or neither).

Counts are clipped to int32's range, as the sample rows store them. Besides the model's inputs it
answers ``activity`` (the user's behaviors in the ``lookback_days`` before the request), the
reports' activity slice.

**State is bounded the way a serving system's is**: per user, the last ``max_len`` behaviors of
each kind (plus those in the newest second, which a request in that second must skip), the times
of their behaviors in the activity window and of their queries per text in the personal window;
per text, the daily totals of the days in the popularity window. Whatever leaves a window is
dropped when the day rolls over. :meth:`save` and :meth:`restore` checkpoint it (written whole or
not at all).

**Time order.** Every call carries a time no earlier than the latest one seen (events, impressions
and requests alike); an earlier one is refused. ``dropdown-rank replay`` (``replay.py``) feeds a
log through it and compares every sample row of a split with what the build wrote.

Python per event, by design: it is the reference for correctness and for a streaming
implementation's cost, not the build's hot path. It imports no TensorFlow.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
from collections import deque
from pathlib import Path

import numpy as np

from dropdown_rank._io import atomic_path
from dropdown_rank.counters import DAILY_COLUMNS
from dropdown_rank.features import BY_NAME, COUNTER_FIELDS, MODEL_INPUTS
from dropdown_rank.logs.schema import DAY, EVENT_KINDS, TS_MAX, TS_MIN
from dropdown_rank.samples import INT32_MAX, SampleConfig

STATE_FORMAT = 1  # the checkpoint's layout: a file of another version is refused, not misread


class _User:
    """One user's serving state."""

    __slots__ = ("queries", "items", "behavior_ts", "query_ts")

    def __init__(self):
        self.queries: deque = deque()  # (ts, query), oldest first
        self.items: deque = deque()  # (ts, item), oldest first
        self.behavior_ts: deque = deque()  # ts of every behavior in the activity window, oldest first
        self.query_ts: dict = {}  # query text -> deque of its ts in the personal window, oldest first


def _newer_than(entries: deque, ts: int, at=lambda entry: entry[0]) -> int:
    """How many of the newest ``entries`` (oldest first) are at or after ``ts``."""
    count = 0
    for entry in reversed(entries):
        if at(entry) < ts:
            break
        count += 1
    return count


def _check_ids(what: str, **ids) -> None:
    """Ids and texts are strings, compared verbatim (README, Serving); another type would be another id."""
    for name, value in ids.items():
        if not isinstance(value, str):
            raise ValueError(f"{what}: {name} must be a string, not {type(value).__name__} {value!r}")


def _drop_before(times: deque, ts: int) -> None:
    while times and times[0] < ts:
        times.popleft()


class FeatureAssembler:
    """Serving features from event and impression streams, point in time; see the module doc.

    ``config`` is the build's :class:`~dropdown_rank.samples.SampleConfig` (its windows and ``max_len``);
    :meth:`for_work` reads it from a work directory's ``build.json``.
    """

    def __init__(self, config: SampleConfig = SampleConfig()):
        self.config = config
        self.lookback_seconds = int(config.lookback_days * DAY)
        self.personal_seconds = int(config.personal_days * DAY)
        self.clock: int | None = None  # the latest time seen
        self.day: int | None = None  # the clock's UTC day start
        self.users: dict[str, _User] = {}
        self.today: dict[str, list] = {}  # text -> [queries, impressions, clicks] of the clock's day
        self.past_days: deque = deque()  # (day start, {text: counts}) of finished days inside the popularity window
        self.window: dict[str, list] = {}  # text -> counts summed over past_days
        self.this_second: dict[tuple, bool] = {}  # (request_id, candidate) -> clicked, in the clock's second: repeats

    @classmethod
    def for_work(cls, build_config: dict) -> "FeatureAssembler":
        """An assembler with the sample settings of a build (``build.json``'s ``config``)."""
        return cls(SampleConfig(**build_config["samples"]))

    # -- time ----------------------------------------------------------------------------------
    def _checked_ts(self, ts, what: str) -> int:
        """``ts`` as whole epoch seconds (fractions truncated, as validation does), if in the build's range and not
        before the latest time seen; the state is untouched until every input of a call has passed."""
        if isinstance(ts, (bool, np.bool_)) or not isinstance(ts, (int, float, np.integer, np.floating)) or not np.isfinite(ts):
            raise ValueError(f"{what}: ts must be epoch seconds, not {ts!r}")
        ts = int(np.floor(ts))
        if not TS_MIN <= ts <= TS_MAX:
            raise ValueError(f"{what}: ts {ts} is outside 1990 to 2100, the build's range (epoch seconds, not milliseconds)")
        if self.clock is not None and ts < self.clock:
            raise ValueError(f"{what} at ts {ts} comes after ts {self.clock}: feed events, impressions and requests in "
                             "time order")
        return ts

    def _advance(self, ts: int) -> None:
        day = ts // DAY * DAY
        if self.day is not None and day != self.day:
            self._roll_over(day)
        if ts != self.clock:
            self.this_second.clear()
        self.day, self.clock = day, ts

    def _roll_over(self, day: int) -> None:
        """Close the clock's day into the popularity window, and drop what every window has left."""
        if self.today:
            self.past_days.append((self.day, self.today))
            for text, counts in self.today.items():
                total = self.window.setdefault(text, [0] * len(DAILY_COLUMNS))
                for c, count in enumerate(counts):
                    total[c] += count
            self.today = {}
        first_day = day - self.config.popularity_days * DAY
        while self.past_days and self.past_days[0][0] < first_day:
            for text, counts in self.past_days.popleft()[1].items():
                total = self.window[text]
                for c, count in enumerate(counts):
                    total[c] -= count
                if not any(total):
                    del self.window[text]
        # A request on this day or later looks back from at least its start.
        for user in self.users.values():
            _drop_before(user.behavior_ts, day - self.lookback_seconds)
            for text, times in list(user.query_ts.items()):
                _drop_before(times, day - self.personal_seconds)
                if not times:
                    del user.query_ts[text]

    # -- ingestion ------------------------------------------------------------------------------
    def add_event(self, user_id: str, ts: int, kind: str, id: str) -> None:
        """A query the user issued (``kind`` "query", ``id`` its text) or an item they clicked ("item"). An exact
        repeat (same user, second, kind and id: a record delivered twice) is dropped, as the build's validation drops
        exact duplicate rows."""
        what = f"event of user {user_id!r}"
        _check_ids(what, user_id=user_id, id=id)
        if kind not in EVENT_KINDS:
            raise ValueError(f"{what}: kind must be one of {', '.join(EVENT_KINDS)}, not {kind!r}")
        ts = self._checked_ts(ts, what)
        self._advance(ts)
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = _User()
        history = user.queries if kind == "query" else user.items
        for entry in reversed(history):  # this second's entries are all still kept (see below)
            if entry[0] < ts:
                break
            if entry[1] == id:
                return
        history.append((ts, id))
        # Keep max_len entries before the newest second, and that second's: a request in it reads only the former.
        keep = self.config.max_len + _newer_than(history, ts)
        while len(history) > keep:
            history.popleft()
        user.behavior_ts.append(ts)
        if kind == "query":
            user.query_ts.setdefault(id, deque()).append(ts)
            self._count(id)[0] += 1

    def add_impression(self, request_id: str, candidate: str, ts: int, clicked: bool) -> None:
        """One candidate shown in a request's dropdown (and whether it was clicked): the daily popularity totals.
        An exact repeat of a (request, candidate) is dropped, as validation drops duplicate rows; a repeat with
        another ``clicked`` is refused, as validation refuses conflicting ones."""
        what = f"impression of {candidate!r} in request {request_id!r}"
        _check_ids(what, request_id=request_id, candidate=candidate)
        if clicked not in (0, 1):
            raise ValueError(f"{what}: clicked must be 0 or 1 (or a bool), not {clicked!r}")
        ts = self._checked_ts(ts, what)
        self._advance(ts)
        seen = self.this_second.get((request_id, candidate))
        if seen is not None:
            if seen != bool(clicked):
                raise ValueError(f"{what}: shown twice at ts {ts}, clicked and not clicked")
            return
        self.this_second[(request_id, candidate)] = bool(clicked)
        counts = self._count(candidate)
        counts[1] += 1
        counts[2] += int(clicked)

    def _count(self, text: str) -> list:
        counts = self.today.get(text)
        if counts is None:
            counts = self.today[text] = [0] * len(DAILY_COLUMNS)
        return counts

    # -- answers --------------------------------------------------------------------------------
    def request_features(self, user_id: str, request_ts: int, prefix, candidates: list) -> dict:
        """The model's inputs for one dropdown request, a row per candidate: ``{name: numpy array}`` with the
        signature's names and dtypes (strings as ``object``; histories ``[len(candidates), H]``, H up to ``max_len``),
        ready for ``tf.constant`` or a TF Serving body. ``prefix`` is what the user typed: one string, or one per
        candidate."""
        what = f"request of user {user_id!r}"
        if isinstance(candidates, str) or not len(candidates):
            raise ValueError(f"{what}: candidates must be a non-empty list of strings, not {candidates!r}")
        prefixes = [prefix] * len(candidates) if isinstance(prefix, str) else list(prefix)
        if len(prefixes) != len(candidates):
            raise ValueError(f"{what}: {len(prefixes)} prefixes for {len(candidates)} candidates")
        _check_ids(what, user_id=user_id, **{f"candidate {c}": value for c, value in enumerate(candidates)},
                   **{f"prefix {c}": value for c, value in enumerate(prefixes)})
        request_ts = self._checked_ts(request_ts, what)
        self._advance(request_ts)
        user = self.users.get(user_id)
        rows = len(candidates)
        out = {"user_id": np.array([user_id] * rows, object), "request_ts": np.full(rows, request_ts, np.int64),
               "candidate": np.array(list(candidates), object), "prefix": np.array(prefixes, object)}
        for kind in ("query", "item"):
            ids, times = self._history(user, kind, request_ts)
            out[f"{kind}_history"] = np.array([ids] * rows, object).reshape(rows, len(ids))
            out[f"{kind}_history_ts"] = np.array([times] * rows, np.int64).reshape(rows, len(times))
        counters = [self._counters(user, candidate, request_ts) for candidate in candidates]
        for c, name in enumerate(COUNTER_FIELDS):
            out[name] = np.array([row[c] for row in counters], np.int64)
        return {name: out[name] for name in MODEL_INPUTS}

    @staticmethod
    def stack(requests: list) -> dict:
        """One batch of several requests' :meth:`request_features`, histories padded to the longest with ``""`` / 0
        (the model's padding, which never changes a score)."""
        out = {}
        for name in MODEL_INPUTS:
            parts = [request[name] for request in requests]
            if BY_NAME[name].history:
                width = max(part.shape[1] for part in parts)
                parts = [np.concatenate([part, np.full((len(part), width - part.shape[1]), BY_NAME[name].padding, part.dtype)],
                                        axis=1) for part in parts]
            out[name] = np.concatenate(parts)
        return out

    def _history(self, user: _User | None, kind: str, request_ts: int) -> tuple[list, list]:
        if user is None:
            return [], []
        history = user.queries if kind == "query" else user.items
        end = len(history) - _newer_than(history, request_ts)
        kept = [history[i] for i in range(end - 1, max(end - self.config.max_len, 0) - 1, -1)]
        return [entry[1] for entry in kept], [entry[0] for entry in kept]

    def _counters(self, user: _User | None, candidate: str, request_ts: int) -> tuple:
        count, age = 0, BY_NAME["user_candidate_age"].padding
        times = user.query_ts.get(candidate) if user is not None else None
        if times:
            _drop_before(times, request_ts - self.personal_seconds)
            count = len(times) - _newer_than(times, request_ts, at=int)
            if count:
                age = request_ts - times[count - 1]
        popularity = self.window.get(candidate, [0] * len(DAILY_COLUMNS))
        return (min(count, INT32_MAX), age, *(min(value, INT32_MAX) for value in popularity))  # COUNTER_FIELDS' order

    def activity(self, user_id: str, request_ts: int) -> int:
        """The user's behaviors (queries and clicked items) in the ``lookback_days`` before ``request_ts``."""
        _check_ids("activity", user_id=user_id)
        request_ts = self._checked_ts(request_ts, f"request of user {user_id!r}")
        self._advance(request_ts)
        user = self.users.get(user_id)
        if user is None:
            return 0
        _drop_before(user.behavior_ts, request_ts - self.lookback_seconds)
        return min(len(user.behavior_ts) - _newer_than(user.behavior_ts, request_ts, at=int), INT32_MAX)

    # -- checkpoints ----------------------------------------------------------------------------
    def state(self) -> dict:
        """The whole state as JSON-ready values."""
        return {
            "format": STATE_FORMAT, "config": dataclasses.asdict(self.config), "clock": self.clock, "day": self.day,
            "users": {uid: {"queries": list(u.queries), "items": list(u.items), "behavior_ts": list(u.behavior_ts),
                            "query_ts": {text: list(times) for text, times in u.query_ts.items()}}
                      for uid, u in self.users.items()},
            "today": {text: list(counts) for text, counts in self.today.items()},
            "past_days": [[day, {text: list(counts) for text, counts in totals.items()}] for day, totals in self.past_days],
            "window": {text: list(counts) for text, counts in self.window.items()},
            "this_second": [[request_id, candidate, clicked] for (request_id, candidate), clicked in self.this_second.items()],
        }

    def save(self, path: str | Path) -> None:
        """Checkpoint the state to ``path`` (gzipped JSON), replacing it atomically."""
        with atomic_path(Path(path)) as tmp:
            with gzip.open(tmp, "wt", encoding="utf-8") as f:
                json.dump(self.state(), f, ensure_ascii=False)

    @classmethod
    def restore(cls, path: str | Path, config: SampleConfig | None = None) -> "FeatureAssembler":
        """An assembler continuing from a :meth:`save`; ``config``, when given, must be the saved one."""
        with gzip.open(path, "rt", encoding="utf-8") as f:
            state = json.load(f)
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"{path}: assembler state format {state.get('format')!r}, this version reads {STATE_FORMAT}")
        saved = SampleConfig(**state["config"])
        if config is not None and config != saved:
            raise ValueError(f"{path}: the state was kept with {saved}, not {config}: windows and lengths must match the "
                             "model's build")
        assembler = cls(saved)
        assembler.clock, assembler.day = state["clock"], state["day"]
        for uid, u in state["users"].items():
            user = assembler.users[uid] = _User()
            user.queries.extend(tuple(entry) for entry in u["queries"])
            user.items.extend(tuple(entry) for entry in u["items"])
            user.behavior_ts.extend(u["behavior_ts"])
            user.query_ts = {text: deque(times) for text, times in u["query_ts"].items()}
        assembler.today = state["today"]
        assembler.this_second = {(request_id, candidate): clicked for request_id, candidate, clicked in state["this_second"]}
        assembler.past_days = deque((day, counts) for day, counts in state["past_days"])
        assembler.window = state["window"]
        return assembler
