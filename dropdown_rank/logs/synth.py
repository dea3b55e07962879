"""A synthetic dropdown world: events and impressions that behave like a real dropdown log.

Generative story (every draw comes from one ``numpy`` generator seeded by ``seed``):

1. **Topics.** ``T`` latent topics in ``G`` groups of related topics (topics ``g*T/G`` …
   ``(g+1)*T/G - 1`` form group ``g``).
2. **Queries.** Each query has one topic (topic sizes from a Dirichlet draw) and a popularity
   weight ``rank**-zipf`` with ranks shuffled over queries, so page views (PV) are Zipf with a long
   tail. Its text is one to three pseudo-words of random syllables, so a typed prefix matches
   queries from many topics. Each query has an intrinsic appeal ``b_q ~ N(0, appeal_sd)``.
3. **Items.** Each item has one topic and a Zipf popularity weight. Items are tied to queries only
   through topics: after a query, a user clicks items of that query's topic (or, sometimes, of a
   related topic in the same group).
4. **Users.** A user's interest ``theta_u`` is a sparse topic mixture: one primary group (and
   sometimes a second one), with Dirichlet weights over the topics of those groups. Activity is
   heavy-tailed: a user's session count for the whole period, ``n_u``, is log-normal, so many users
   have fewer than 5 behaviors and a few have hundreds.
   **Arriving users.** A share ``arrival_share`` of users (0.75) is new: each arrives at a uniform
   time ``a_u`` in the period, and their log-normal has the lower log-mean
   ``arrival_session_log_mean`` (new users are mostly light). The others are residents, there
   from the start with log-mean ``session_log_mean``. An arriving user keeps their own rate from
   arrival on: the first session starts at ``a_u``, and each of the other ``n_u - 1`` sessions
   happens with probability equal to the share of the period left after ``a_u``, at a uniform
   time after it. Nothing of theirs precedes ``a_u``. Since the user base grows, so does traffic
   (the last days have about a third more impressions than the first).
5. **Sessions.** A resident's session starts at a uniform time in the period (an arriving user's,
   as above); it draws its topic ``z ~ theta_u`` and issues one or more queries. Each query stays
   on ``z`` or drifts to a related topic in the same group; within the topic, the intended query
   ``q*`` is drawn by popularity.
   After each query the user clicks a Poisson number of items. Co-occurrence graphs therefore
   emerge from behavior; nothing about neighbors is planted.
6. **Dropdown requests.** Some queries are typed through the dropdown and logged as a request: the
   prefix is the first 1-3 characters of ``q*``; the legacy engine's candidate list mixes
   queries with that prefix from the user's top topics with the prefix's most popular queries (and
   sometimes ``q*`` itself), ordered by a noisy popularity score. Positions are 0-based.
7. **Clicks.** Each candidate ``c`` at position ``p`` is clicked independently with the ground-truth
   probability ``(1 + p) ** -position_decay * sigmoid(logit)``, where ``logit`` adds: a base rate;
   the user's long-term interest ``theta_u[topic(c)]`` (the whole mixture, of which the last 20
   behaviors reveal only part); the session's current topic and its group; whether ``c`` is the
   intended ``q*``; ``log`` popularity; and ``b_c``. The query the user then issues is the clicked
   candidate (the top-most one), or else ``q*``, a few seconds after the request.
8. **Query life cycle** (off unless ``birth_share`` or ``death_share`` is above 0; on only in the
   ``default`` preset, and where it is off no draw of it is made, so the other presets' worlds are
   what they were). A share
   ``birth_share`` of the queries (never a topic's first) is born at a uniform time; a share
   ``trend_share`` of those trends, starting at ``1 + trend_boost`` times its weight and decaying
   with time constant ``trend_days``; a share ``death_share`` of the others fades linearly to 0
   over the ``fade_days`` before a uniform death time (20 s early: the query a request leads to
   is issued up to 19 s later). Intended queries (exact rejection sampling per day), the engine's
   candidates (the living ones among the first ``ENGINE_DEPTH`` times its list's length of the
   prefix's pool by base popularity, ranked by current popularity) and the click logit's
   popularity term use the popularity at that moment. ``query_life.parquet`` records births,
   deaths and trends; ``generate_world`` returns it as ``life`` (None without a life cycle).

Outputs in ``out``: ``events.parquet`` and ``impressions.parquet`` (the log schema),
``truth.parquet`` (not a log table: request_id, candidate, ``p_click``, each impression's true
click probability including the position factor, and ``p_relevance = sigmoid(logit)``, the same
probability with the position factor removed, what a ranker that ranks by relevance should
approach; evaluation uses them for the oracle and the relevance-only oracle), and ``world.json``
(parameters and summary). The summary records, among others, the share of impressions whose user
had fewer than 5 events strictly before the request, overall and in the last 3 days (the default
test split). ``generate_world`` also returns ``users`` (user_id, arrives, arrival_ts), which is not
written.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from dropdown_rank._io import write_json, write_parquet
from dropdown_rank.logs.schema import DAY

START_TS = int(pd.Timestamp("2026-01-01", tz="UTC").timestamp())
ENGINE_DEPTH = 4  # with a life cycle, the legacy engine reads this many times its list's length into a prefix's pool
_CONSONANTS = np.array(list("bdfgklmnprstvz"))
_VOWELS = np.array(list("aeiou"))


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    users: int
    queries: int
    items: int
    days: int
    topics: int = 100
    groups: int = 20
    session_log_mean: float = 1.1
    session_log_sd: float = 1.8
    max_sessions: int = 300
    arrival_share: float = 0.75
    arrival_session_log_mean: float = -0.5
    extra_queries_per_session: float = 0.9
    items_per_query: float = 0.9
    drift: float = 0.2
    request_rate: float = 0.1
    candidates: int = 10
    zipf: float = 1.0
    appeal_sd: float = 0.3
    second_group_rate: float = 0.6
    interest_concentration: float = 0.8
    engine_knowledge: float = 0.5
    base_logit: float = -3.0
    w_interest: float = 1.6
    w_session: float = 1.2
    w_group: float = 0.4
    w_intended: float = 1.6
    w_popularity: float = 0.25
    position_decay: float = 0.6
    # Query life cycle (story step 8); 0 unless a preset or a caller sets them, and then no draw of it is made.
    birth_share: float = 0.0
    trend_share: float = 0.5
    trend_boost: float = 20.0
    trend_days: float = 2.0
    death_share: float = 0.0
    fade_days: float = 3.0

    def __post_init__(self):
        for name in ("birth_share", "trend_share", "death_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:  # also refuses NaN
                raise ValueError(f"{name} must be a share from 0 to 1, not {getattr(self, name)}")
        if not (self.trend_boost >= 0 and self.trend_days > 0 and self.fade_days > 0):
            raise ValueError(f"trend_boost must be >= 0, trend_days and fade_days > 0 (not {self.trend_boost}, {self.trend_days}, "
                             f"{self.fade_days})")

    @property
    def lifecycle(self) -> bool:
        return self.birth_share > 0 or self.death_share > 0


SCALES = {
    "tiny": WorldConfig(users=1280, queries=1500, items=800, days=12, topics=20, groups=5),
    "small": WorldConfig(users=9600, queries=10000, items=6000, days=20, topics=50, groups=10),
    # Catalog and life cycle chosen from the real logs' profiles before any model was trained on it (issue 26,
    # experiments/README.md): 12.2% first-time queries and 1.2% test candidates outside the vocabulary, inside the
    # range AOL-dev and Best Buy span (10.3-50% and 0.4-1.8%).
    "default": WorldConfig(users=64000, queries=250000, items=30000, days=30, birth_share=0.02, death_share=0.3),
    # The default world until 2026-12-04: a fixed catalog of 50,000 queries, all alive from day one. Every figure
    # measured before then on "the default world" reproduces with this preset.
    "static": WorldConfig(users=64000, queries=50000, items=30000, days=30),
}


def _zipf_weights(rng, n: int, exponent: float) -> np.ndarray:
    return (rng.permutation(n) + 1.0) ** -exponent


class _TopicSampler:
    """Draw members of given topics in proportion to their weights, vectorized.

    Members are sorted by topic; each topic's cumulative weights are scaled into [t, t+1), so one
    ``searchsorted`` of ``t + u`` draws a member of topic ``t`` for every request at once.
    """

    def __init__(self, topic_of: np.ndarray, weight: np.ndarray, topics: int):
        order = np.argsort(topic_of, kind="stable")
        topic_sorted = topic_of[order]
        totals = np.bincount(topic_of, weights=weight, minlength=topics)
        if (totals == 0).any():
            raise ValueError("every topic needs at least one member; raise the item/query counts")
        cum = np.cumsum(weight[order])
        before = np.concatenate([[0.0], np.cumsum(totals)])[topic_sorted]
        self._keys = topic_sorted + (cum - before) / totals[topic_sorted]
        self._members = order

    def draw(self, rng, topics: np.ndarray) -> np.ndarray:
        u = rng.uniform(1e-9, 1.0 - 1e-9, size=len(topics))
        idx = np.searchsorted(self._keys, topics + u, side="left")
        return self._members[np.minimum(idx, len(self._members) - 1)]


def _pseudo_words(rng, n: int) -> np.ndarray:
    """``n`` unique query texts of 1-3 words, each word 2-3 consonant-vowel syllables."""
    texts: list[str] = []
    seen: set[str] = set()
    while len(texts) < n:
        m = 2 * (n - len(texts)) + 16
        words = []
        for _ in range(3):
            syllables = rng.integers(2, 4, size=m)
            word = np.char.add(rng.choice(_CONSONANTS, m), rng.choice(_VOWELS, m))
            for k in range(1, 3):
                extra = np.char.add(rng.choice(_CONSONANTS, m), rng.choice(_VOWELS, m))
                word = np.where(syllables > k, np.char.add(word, extra), word)
            words.append(word)
        n_words = rng.choice([1, 2, 3], size=m, p=[0.3, 0.5, 0.2])
        text = words[0]
        for k in (1, 2):
            text = np.where(n_words > k, np.char.add(np.char.add(text, " "), words[k]), text)
        for t in text.tolist():
            if t not in seen:
                seen.add(t)
                texts.append(t)
    return np.array(texts[:n], dtype=object)


def _csr(keys: np.ndarray, order_within: np.ndarray, n_keys: int):
    """Group indices by ``keys`` (sorted by ``order_within`` inside a key): members, start, size."""
    order = np.lexsort((order_within, keys))
    size = np.bincount(keys, minlength=n_keys)
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    return order, start, size


def generate_world(config: WorldConfig, seed: int = 0, progress=print) -> dict:
    """Generate one world in memory: frames ``events``, ``impressions``, ``truth``, ``users`` (user_id,
    arrives, arrival_ts; not written) and the ``summary`` dict.

    The stages below draw from one generator in a fixed order, so a seed gives the same world."""
    if config.topics % config.groups:
        raise ValueError("topics must be a multiple of groups")
    rng = np.random.default_rng(seed)
    catalog = _catalog(rng, config)
    people = _users(rng, config)
    catalog.life = _life_cycle(rng, config, catalog) if config.lifecycle else None
    slots = _query_slots(rng, config, catalog, people)
    progress(f"synth: {config.users:,} users, {len(people.s_user):,} sessions, {len(slots.session):,} queries")
    shown = _dropdowns(rng, config, catalog, people, slots)
    clicks = _clicks(rng, config, catalog, people, slots, shown)
    behaviors = _behaviors(rng, config, catalog, slots, shown, clicks)
    return _world_frames(rng, config, catalog, people, slots, shown, clicks, behaviors)


def _catalog(rng, cfg: WorldConfig) -> SimpleNamespace:
    """Queries and items: topic, Zipf popularity, appeal (queries), text and ids."""
    topic_share = rng.dirichlet(np.full(cfg.topics, 2.0))
    q_topic = rng.choice(cfg.topics, size=cfg.queries, p=topic_share)
    q_topic[: cfg.topics] = np.arange(cfg.topics)  # every topic has at least one query
    q_pop = _zipf_weights(rng, cfg.queries, cfg.zipf)
    q_appeal = rng.normal(0.0, cfg.appeal_sd, cfg.queries)
    q_text = _pseudo_words(rng, cfg.queries)
    i_topic = rng.choice(cfg.topics, size=cfg.items, p=topic_share)
    i_topic[: cfg.topics] = np.arange(cfg.topics)
    i_pop = _zipf_weights(rng, cfg.items, cfg.zipf)
    item_ids = np.array([f"{x:07d}" for x in rng.choice(9_000_000, cfg.items, replace=False) + 1_000_000], dtype=object)
    return SimpleNamespace(q_topic=q_topic, q_pop=q_pop, q_appeal=q_appeal, q_text=q_text, i_topic=i_topic, item_ids=item_ids,
                           query_by_topic=_TopicSampler(q_topic, q_pop, cfg.topics),
                           item_by_topic=_TopicSampler(i_topic, i_pop, cfg.topics))


ISSUE_DELAY_SECONDS = 20  # a dropdown request's query is issued 2 to 19 s after it


def _life_cycle(rng, cfg: WorldConfig, catalog) -> SimpleNamespace:
    """Birth and death times (seconds from the start) and trends of the queries; the first ``topics`` queries, one per
    topic, live all period (every topic always has a query to draw). Intended queries are drawn per day by each
    query's highest popularity that day (``day_samplers``), and :func:`_redraw_until_alive` keeps a draw with its
    share of that at its moment."""
    span = cfg.days * DAY
    n = cfg.queries
    mortal = np.arange(n) >= cfg.topics
    born = mortal & (rng.random(n) < cfg.birth_share)
    birth = np.where(born, rng.integers(0, span, size=n), 0)
    dies = mortal & ~born & (rng.random(n) < cfg.death_share)
    death = np.where(dies, rng.integers(0, span, size=n), np.iinfo(np.int64).max)
    trending = born & (rng.random(n) < cfg.trend_share)
    catalog.life = SimpleNamespace(born=born, birth=birth, death=death, trending=trending)
    # Both factors only fall after birth: a query's highest popularity in a day is at its birth or at the day's start.
    queries = np.arange(n)
    day_peak = np.stack([_factor(cfg, catalog, queries, np.maximum(birth, day * DAY)) * (birth < (day + 1) * DAY)
                         for day in range(cfg.days)])
    catalog.life.day_peak = day_peak  # [days, queries]
    catalog.life.day_samplers = [_TopicSampler(catalog.q_topic, catalog.q_pop * peak, cfg.topics) for peak in day_peak]
    return catalog.life


def _factor(cfg: WorldConfig, catalog, q: np.ndarray, t) -> np.ndarray:
    """A query's popularity at ``t`` (seconds from the start) relative to its base: 0 before its birth and from
    ``ISSUE_DELAY_SECONDS`` before its death on (a query shown or intended then would be issued after it); a trending
    query starts at ``1 + trend_boost`` and decays to 1 with time constant ``trend_days``; a dying query falls linearly
    to 0 over the ``fade_days`` before that. ``q = -1`` (no query) gives 0."""
    life, q, t = catalog.life, np.asarray(q), np.asarray(t)
    known = q >= 0
    q = np.maximum(q, 0)
    age = t - life.birth[q]
    trend = np.where(life.trending[q], 1.0 + cfg.trend_boost * np.exp(-np.maximum(age, 0) / (cfg.trend_days * DAY)), 1.0)
    left = life.death[q] - ISSUE_DELAY_SECONDS - t  # the death sentinel is int64's max and t >= 0: no overflow
    fade = np.clip(left / (cfg.fade_days * DAY), 0.0, 1.0)
    return np.where(known & (age >= 0), trend * fade, 0.0)


def _popularity(cfg: WorldConfig, catalog, q: np.ndarray, t) -> np.ndarray:
    """A query's popularity weight at ``t``: its Zipf weight, times its life-cycle factor when the world has one."""
    return catalog.q_pop[q] if catalog.life is None else catalog.q_pop[q] * _factor(cfg, catalog, q, t)


def _draw_alive(rng, cfg: WorldConfig, catalog, topic: np.ndarray, t: np.ndarray, tries: int = 60) -> tuple[np.ndarray, int]:
    """Queries of ``topic`` drawn by their popularity at ``t``: each day's draws come from that day's sampler (weights:
    the day's highest popularity) and are kept with probability popularity at ``t`` / that highest, which is exact.
    A draw rejected ``tries`` times becomes its topic's immortal query; returns the draws and how many did."""
    drawn = np.empty(len(t), np.int64)
    day = np.minimum(t // DAY, cfg.days - 1)
    todo = np.arange(len(t))
    for _ in range(tries):
        for d in np.unique(day[todo]):
            at = todo[day[todo] == d]
            drawn[at] = catalog.life.day_samplers[d].draw(rng, topic[at])
        peak = catalog.life.day_peak[day[todo], drawn[todo]]
        keep = rng.random(len(todo)) * peak < _factor(cfg, catalog, drawn[todo], t[todo])
        todo = todo[~keep]
        if not len(todo):
            return drawn, 0
    drawn[todo] = topic[todo]  # _catalog makes query k the first of topic k
    return drawn, len(todo)


def _users(rng, cfg: WorldConfig) -> SimpleNamespace:
    """Users with sparse interest over the topics of one or two groups, and their sessions.

    Residents are there all period; arriving users start at a uniform arrival time and keep their
    own rate from then on: their first session starts at arrival, and each of their other
    n_rate - 1 sessions (a count for the whole period) survives with the share of the period left
    after arrival, at a uniform time after it."""
    per_group = cfg.topics // cfg.groups
    n_slots = 2 * per_group
    g1 = rng.integers(cfg.groups, size=cfg.users)
    g2 = np.where(rng.random(cfg.users) < cfg.second_group_rate, rng.integers(cfg.groups, size=cfg.users), g1)
    u_topics = np.concatenate([g1[:, None] * per_group + np.arange(per_group), g2[:, None] * per_group + np.arange(per_group)], axis=1)
    u_weight = rng.gamma(cfg.interest_concentration, size=(cfg.users, n_slots)) * np.r_[np.ones(per_group), np.full(per_group, 0.5)]
    u_weight[g2 == g1, per_group:] = 0.0
    u_weight += 1e-12
    u_weight /= u_weight.sum(axis=1, keepdims=True)
    theta = np.zeros((cfg.users, cfg.topics))
    np.add.at(theta, (np.repeat(np.arange(cfg.users), n_slots), u_topics.ravel()), u_weight.ravel())
    user_ids = np.array([f"u{x:08x}" for x in rng.choice(16**8, cfg.users, replace=False)], dtype=object)

    span = cfg.days * DAY - 3600
    arriving = rng.random(cfg.users) < cfg.arrival_share
    arrival = np.where(arriving, rng.integers(0, span, size=cfg.users), 0)
    log_mean = np.where(arriving, cfg.arrival_session_log_mean, cfg.session_log_mean)
    n_rate = np.clip(np.round(rng.lognormal(log_mean, cfg.session_log_sd)), 1, cfg.max_sessions).astype(np.int64)
    n_sessions = np.where(arriving, 1 + rng.binomial(n_rate - 1, (span - arrival) / span), n_rate)
    s_user = np.repeat(np.arange(cfg.users), n_sessions)
    n_s = len(s_user)
    s_start = arrival[s_user] + (rng.random(n_s) * (span - arrival[s_user])).astype(np.int64)
    s_first = np.r_[True, s_user[1:] != s_user[:-1]]
    s_start = np.where(s_first & arriving[s_user], arrival[s_user], s_start)
    cum_w = np.cumsum(u_weight[s_user], axis=1)
    pick = (cum_w < rng.random(n_s)[:, None] * cum_w[:, -1:]).sum(axis=1)
    s_topic = u_topics[s_user, np.minimum(pick, n_slots - 1)]
    s_len = 1 + rng.poisson(cfg.extra_queries_per_session, size=n_s)
    return SimpleNamespace(per_group=per_group, n_slots=n_slots, u_topics=u_topics, u_weight=u_weight, theta=theta,
                           theta_rel=theta / theta.max(axis=1, keepdims=True), user_ids=user_ids, arriving=arriving,
                           arrival=arrival, s_user=s_user, s_start=s_start, s_topic=s_topic, s_len=s_len)


def _query_slots(rng, cfg: WorldConfig, catalog, people) -> SimpleNamespace:
    """One slot per query a session issues: its topic (drifting within the group), intended query and time."""
    session = np.repeat(np.arange(len(people.s_user)), people.s_len)
    n_q = len(session)
    per_group = people.per_group
    drift = rng.random(n_q) < cfg.drift
    related = (people.s_topic[session] // per_group) * per_group + rng.integers(per_group, size=n_q)
    topic = np.where(drift, related, people.s_topic[session])
    intended = catalog.query_by_topic.draw(rng, topic)
    gaps = 30 + rng.exponential(150.0, size=n_q)
    first = np.r_[True, session[1:] != session[:-1]]
    cum_gaps = np.cumsum(gaps)
    offset = cum_gaps - np.maximum.accumulate(np.where(first, cum_gaps, 0.0))
    ts = START_TS + people.s_start[session] + offset.astype(np.int64)
    fallbacks = 0
    if catalog.life is not None:  # drawn again, by the popularity of the moment
        intended, fallbacks = _draw_alive(rng, cfg, catalog, topic, ts - START_TS)
    return SimpleNamespace(session=session, topic=topic, intended=intended, ts=ts, user=people.s_user[session],
                           fallbacks=fallbacks)


def _dropdowns(rng, cfg: WorldConfig, catalog, people, slots) -> SimpleNamespace:
    """Dropdown requests and the legacy engine's candidate lists: the impressions ``r`` (request), ``c`` (candidate),
    ``pos`` (position)."""
    n_q = len(slots.session)
    req_slot = np.flatnonzero(rng.random(n_q) < cfg.request_rate)
    n_r = len(req_slot)
    req_user = slots.user[req_slot]
    req_q = slots.intended[req_slot]
    prefix_len = rng.choice([1, 2, 3], size=n_r, p=[0.3, 0.4, 0.3])
    prefix_table = np.stack([np.array([t[:k] for t in catalog.q_text], dtype=object) for k in (1, 2, 3)], axis=1)
    prefix_codes, prefix_values = pd.factorize(prefix_table.ravel())
    prefix_code = prefix_codes.reshape(cfg.queries, 3)
    n_prefix = len(prefix_values)
    # For every (query, k) the pool is the queries sharing that prefix; both lookups are CSR.
    owner = np.repeat(np.arange(cfg.queries), 3)
    pool, pool_start, pool_size = _csr(prefix_code.ravel(), -catalog.q_pop[owner], n_prefix)
    pool_member = owner[pool]
    tkey = prefix_code.ravel() * cfg.topics + catalog.q_topic[owner]
    tkey_codes, tkey_values = pd.factorize(tkey)
    tpool, tpool_start, tpool_size = _csr(tkey_codes, np.zeros(len(tkey)), len(tkey_values))
    tpool_member = owner[tpool]
    tkey_index = pd.Index(tkey_values)

    req_prefix = prefix_code[req_q, prefix_len - 1]
    width = cfg.candidates
    req_t = slots.ts[req_slot] - START_TS
    # With a life cycle the engine reads deeper into the prefix's pool (sorted by base popularity, as an engine's
    # long-run counts would rank it) and keeps what is alive; it then ranks them by their popularity of the moment.
    depth = width if catalog.life is None else ENGINE_DEPTH * width
    top_idx = pool_start[req_prefix][:, None] + np.arange(depth)
    top_ok = np.arange(depth) < pool_size[req_prefix][:, None]
    top = np.where(top_ok, pool_member[np.minimum(top_idx, len(pool_member) - 1)], -1)
    if catalog.life is not None:
        top = np.where(_factor(cfg, catalog, top, req_t[:, None]) > 0, top, -1)
    # The legacy engine knows the user only roughly: each personal pick's topic comes from the
    # user's interest with probability engine_knowledge, otherwise it is a random topic.
    personal = np.full((n_r, 4), -1)
    for j in range(4):
        cum_u = np.cumsum(people.u_weight[req_user], axis=1)
        guess = people.u_topics[req_user, np.minimum((cum_u < rng.random(n_r)[:, None]).sum(axis=1), people.n_slots - 1)]
        topic = np.where(rng.random(n_r) < cfg.engine_knowledge, guess, rng.integers(cfg.topics, size=n_r))
        code = tkey_index.get_indexer(req_prefix * cfg.topics + topic)
        ok = code >= 0
        size = np.where(ok, tpool_size[np.maximum(code, 0)], 0)
        pick = tpool_start[np.maximum(code, 0)] + (rng.random(n_r) * np.maximum(size, 1)).astype(int)
        personal[:, j] = np.where(ok & (size > 0), tpool_member[np.minimum(pick, len(tpool_member) - 1)], -1)
        if catalog.life is not None:
            personal[:, j] = np.where(_factor(cfg, catalog, personal[:, j], req_t) > 0, personal[:, j], -1)
    with_intended = np.where(rng.random(n_r) < 0.5, req_q, -1)
    pool_cands = np.concatenate([with_intended[:, None], personal, top], axis=1)
    bonus = np.concatenate([np.full((n_r, 1), 1.0), np.full((n_r, 4), 1.0), np.zeros((n_r, depth))], axis=1)
    rows = np.repeat(np.arange(n_r), pool_cands.shape[1])
    cand = pool_cands.ravel()
    popularity = _popularity(cfg, catalog, np.maximum(cand, 0), req_t[rows])
    score = np.log(np.maximum(popularity, 1e-300)) + bonus.ravel() + rng.normal(0.0, 0.7, size=len(cand))
    shown = pd.DataFrame({"r": rows, "c": cand, "s": score})
    shown = shown[shown["c"] >= 0].drop_duplicates(["r", "c"], keep="first")
    shown = shown.sort_values(["r", "s"], ascending=[True, False], kind="stable")
    shown["position"] = shown.groupby("r", sort=False).cumcount()
    shown = shown[shown["position"] < width]
    return SimpleNamespace(req_slot=req_slot, req_user=req_user, req_prefix=req_prefix, prefix_values=prefix_values,
                           r=shown["r"].to_numpy(), c=shown["c"].to_numpy(), pos=shown["position"].to_numpy())


def _clicks(rng, cfg: WorldConfig, catalog, people, slots, shown) -> SimpleNamespace:
    """Ground-truth relevance and click probabilities of every impression, and the clicks drawn from them."""
    r, c, pos = shown.r, shown.c, shown.pos
    u = shown.req_user[r]
    slot = shown.req_slot[r]
    c_topic = catalog.q_topic[c]
    per_group = people.per_group
    logit = (
        cfg.base_logit
        + cfg.w_interest * people.theta_rel[u, c_topic]
        + cfg.w_session * (c_topic == slots.topic[slot])
        + cfg.w_group * (c_topic // per_group == slots.topic[slot] // per_group)
        + cfg.w_intended * (c == slots.intended[slot])
        + cfg.w_popularity * np.log(_popularity(cfg, catalog, c, slots.ts[slot] - START_TS) / np.median(catalog.q_pop))
        + catalog.q_appeal[c]
    )
    p_relevance = 1.0 / (1.0 + np.exp(-logit))
    p_click = (1.0 + pos) ** -cfg.position_decay * p_relevance
    return SimpleNamespace(u=u, slot=slot, p_relevance=p_relevance, p_click=p_click, clicked=rng.random(len(p_click)) < p_click)


def _behaviors(rng, cfg: WorldConfig, catalog, slots, shown, clicks) -> SimpleNamespace:
    """The query each slot issued (the top-most clicked suggestion, else the intended query) and the item clicks after it."""
    n_q = len(slots.session)
    r, c, pos, clicked = shown.r, shown.c, shown.pos, clicks.clicked
    issued = slots.intended.copy()
    first_click = pd.DataFrame({"r": r[clicked], "pos": pos[clicked], "c": c[clicked]}).sort_values(["r", "pos"]).drop_duplicates("r")
    issued[shown.req_slot[first_click["r"].to_numpy()]] = first_click["c"].to_numpy()
    query_ts = slots.ts.copy()
    query_ts[shown.req_slot] += rng.integers(2, ISSUE_DELAY_SECONDS, size=len(shown.req_slot))

    per_group = cfg.topics // cfg.groups
    n_items = rng.poisson(cfg.items_per_query, size=n_q)
    item_slot = np.repeat(np.arange(n_q), n_items)
    item_drift = rng.random(len(item_slot)) < cfg.drift / 2
    base_topic = catalog.q_topic[issued[item_slot]]
    item_topic = np.where(item_drift, (base_topic // per_group) * per_group + rng.integers(per_group, size=len(item_slot)), base_topic)
    items = catalog.item_by_topic.draw(rng, item_topic)
    item_first = np.r_[True, item_slot[1:] != item_slot[:-1]] if len(item_slot) else np.zeros(0, bool)
    item_gap = 5 + rng.exponential(25.0, size=len(item_slot))
    cum_item = np.cumsum(item_gap)
    item_offset = cum_item - np.maximum.accumulate(np.where(item_first, cum_item - item_gap, 0.0))
    return SimpleNamespace(issued=issued, query_ts=query_ts, item_slot=item_slot, items=items,
                           item_ts=query_ts[item_slot] + item_offset.astype(np.int64))


def _world_frames(rng, cfg: WorldConfig, catalog, people, slots, shown, clicks, behaviors) -> dict:
    """The world's frames and its summary."""
    n_q, n_r = len(slots.session), len(shown.req_slot)
    slot_user, item_slot = slots.user, behaviors.item_slot
    events = pd.DataFrame({
        "user_id": np.concatenate([people.user_ids[slot_user], people.user_ids[slot_user[item_slot]]]),
        "ts": np.concatenate([behaviors.query_ts, behaviors.item_ts]).astype(np.int64),
        "kind": np.concatenate([np.full(n_q, "query", dtype=object), np.full(len(item_slot), "item", dtype=object)]),
        "id": np.concatenate([catalog.q_text[behaviors.issued], catalog.item_ids[behaviors.items]]),
    })
    events = events.sort_values(["ts", "user_id"], kind="stable").reset_index(drop=True)
    request_ids = np.array([f"r{i:07d}" for i in range(n_r)], dtype=object)
    impressions = pd.DataFrame({
        "request_id": request_ids[shown.r],
        "user_id": people.user_ids[clicks.u],
        "ts": slots.ts[clicks.slot].astype(np.int64),
        "prefix": np.asarray(shown.prefix_values, dtype=object)[shown.req_prefix[shown.r]],
        "candidate": catalog.q_text[shown.c],
        "position": shown.pos.astype(np.int32),
        "clicked": clicks.clicked.astype(np.int8),
    })
    truth = pd.DataFrame({
        "request_id": impressions["request_id"], "candidate": impressions["candidate"], "p_click": clicks.p_click,
        "p_relevance": clicks.p_relevance,
    })
    users = pd.DataFrame({"user_id": people.user_ids, "arrives": people.arriving,
                          "arrival_ts": START_TS + people.arrival.astype(np.int64)})
    event_user = np.concatenate([slot_user, slot_user[item_slot]])
    event_ts = np.concatenate([behaviors.query_ts, behaviors.item_ts])
    request_ts = slots.ts[shown.req_slot]
    revealed = _interest_revealed(
        rng, people.theta, event_user, event_ts, np.concatenate([catalog.q_topic[behaviors.issued], catalog.i_topic[behaviors.items]]),
        shown.req_user, request_ts,
    )
    summary = _summary(cfg, events, impressions, clicks.clicked, people.arriving, event_user, event_ts, shown.req_user,
                       request_ts, slots.ts[clicks.slot], shown.r)
    summary["interest_revealed"] = revealed
    life = None
    if catalog.life is not None:
        finite = catalog.life.death < np.iinfo(np.int64).max
        life = pd.DataFrame({"query": catalog.q_text, "born_ts": START_TS + catalog.life.birth,
                             "dies_ts": np.where(finite, START_TS + np.where(finite, catalog.life.death, 0), -1),
                             "trending": catalog.life.trending})
        summary["life_cycle"] = {"born": int(catalog.life.born.sum()), "trending": int(catalog.life.trending.sum()),
                                 "dying": int(finite.sum()), "intended_fallbacks": int(slots.fallbacks)}
    return {"events": events, "impressions": impressions, "truth": truth, "users": users, "summary": summary, "life": life}


def _summary(cfg: WorldConfig, events, impressions, clicked, arriving, event_user, event_ts, req_user, request_ts, imp_ts,
             imp_request) -> dict:
    behaviors = np.bincount(event_user, minlength=cfg.users)
    light = (_earlier_behaviors(event_user, event_ts, req_user, request_ts) < 5)[imp_request]
    last3 = imp_ts >= (imp_ts.max() // DAY + 1 - 3) * DAY if len(imp_ts) else np.zeros(0, bool)
    return {
        "users": cfg.users,
        "queries": cfg.queries,
        "items": cfg.items,
        "days": cfg.days,
        "events": len(events),
        "impressions": len(impressions),
        "requests": len(req_user),
        "ctr": float(clicked.mean()),
        "users_with_fewer_than_5_behaviors": float((behaviors < 5).mean()),
        "users_arriving_during_period": float(arriving.mean()),
        # At request time, counting all of the user's events strictly before the request; the
        # last 3 days are the default test split (day-aligned, as build splits).
        "impressions_from_users_with_fewer_than_5_earlier_behaviors": {
            "share": float(light.mean()),
            "share_last_3_days": float(light[last3].mean()),
            "count_last_3_days": int(light[last3].sum()),
            "impressions_last_3_days": int(last3.sum()),
        },
        "behaviors_per_user_quantiles": {q: float(np.quantile(behaviors, q)) for q in (0.5, 0.9, 0.99, 1.0)},
    }


def _earlier_behaviors(user, ts, req_user, req_ts) -> np.ndarray:
    """Per request, the number of the user's events strictly before the request time."""
    key = np.sort(user.astype(np.int64) * (1 << 33) + ts)
    base = req_user.astype(np.int64) * (1 << 33)
    return np.searchsorted(key, base + req_ts, side="left") - np.searchsorted(key, base, side="left")


def _interest_revealed(rng, theta, user, ts, topic, req_user, req_ts, sample: int = 20000) -> dict:
    """Share of a user's interest mass (theta) on topics seen in their last 20 / 50 behaviors.

    Averaged over a sample of requests, for all requests and for users with 50+ earlier
    behaviors: the number that shows how much a longer history could reveal.
    """
    key = user.astype(np.int64) * (1 << 33) + ts
    order = np.argsort(key, kind="stable")
    key, topic = key[order], topic[order]
    pick = rng.choice(len(req_user), size=min(sample, len(req_user)), replace=False)
    base = req_user[pick].astype(np.int64) * (1 << 33)
    end = np.searchsorted(key, base + req_ts[pick], side="left")
    count = end - np.searchsorted(key, base, side="left")
    out = {}
    for length in (20, 50):
        steps = np.arange(1, length + 1)
        valid = steps[None, :] <= count[:, None]
        seen = np.zeros((len(pick), theta.shape[1]))
        rows = np.repeat(np.arange(len(pick)), length).reshape(len(pick), length)
        seen[rows[valid], topic[(end[:, None] - steps[None, :])[valid]]] = 1.0
        mass = (seen * theta[req_user[pick]]).sum(axis=1)
        out[f"last_{length}"] = float(mass.mean())
        out[f"last_{length}_users_with_50_plus"] = float(mass[count >= 50].mean()) if (count >= 50).any() else None
    return out


def write_world(out: str | Path, scale: str = "default", seed: int = 0, progress=print, **overrides) -> dict:
    """Generate the world of ``scale`` (with ``overrides`` of its :class:`WorldConfig`, such as ``birth_share``) and write
    it to ``out``. Returns the summary."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, not {scale!r}")
    config = dataclasses.replace(SCALES[scale], **overrides)
    out = Path(out)
    started = time.perf_counter()
    world = generate_world(config, seed=seed, progress=progress)
    for name in ("events", "impressions", "truth"):
        write_parquet(out / f"{name}.parquet", world[name])
    if world["life"] is not None:
        write_parquet(out / "query_life.parquet", world["life"])
    else:  # an earlier world's, which would describe queries this one does not have
        (out / "query_life.parquet").unlink(missing_ok=True)
    summary = dict(world["summary"], scale=scale, seed=seed, seconds=round(time.perf_counter() - started, 2))
    summary["oracle_auc"] = float(roc_auc_score(world["impressions"]["clicked"], world["truth"]["p_click"]))
    summary["oracle_auc_relevance_only"] = float(roc_auc_score(world["impressions"]["clicked"], world["truth"]["p_relevance"]))
    write_json(out / "world.json", {"config": dataclasses.asdict(config), "summary": summary})
    progress(
        f"synth: wrote {summary['events']:,} events, {summary['impressions']:,} impressions to {out} "
        f"in {summary['seconds']:.1f}s (CTR {summary['ctr']:.3f}, oracle AUC {summary['oracle_auc']:.4f})"
    )
    return summary

