"""The recommendation evaluation protocol, three baselines and the blended model.

Protocol (``evaluate_protocol``), what `habitue recommend evaluate` prints:

- **Time split.** Basket lines before ``split_at`` are the training history; lines in
  ``[split_at, split_at + horizon_days)`` (all later lines without a horizon) are the test
  period. Nothing from the test period is used to fit or to rank.
- **Who is evaluated.** Members with at least one training line and one test line (cold-start
  members are not: every method would show them the popular items).
- **Two tasks.** *Next basket*: the relevant items are every item the member bought in the test
  period, and items they bought before may be recommended (in grocery most of what people buy
  next they bought before). *New to you*: the relevant items are the test items the member never
  bought in training; items bought in training are never recommended, and members who bought
  nothing new are not evaluated for this task.
- **A hit** is a recommended item among the relevant ones (each item counts once, whatever the
  quantity or the number of baskets). Per member: precision@k = hits / k, recall@k = hits /
  min(k, relevant), NDCG@k with binary gains (ideal: min(k, relevant) hits first), hit rate =
  at least one hit; the tables give the means over the members evaluated.
- **Methods.** *popularity*: items by their number of distinct buyers in training. *item-item*:
  the sum of the cosine similarities (over who bought what) between a candidate and the items
  the member bought, as `recommend.fit_item_similarity` (each item's 20 nearest neighbours
  kept); *repurchase*: the member's own items by how many times they bought them. Each method
  fills the slots it cannot rank with popular items (among the k + 100 most popular).
  *model*: the member's own purchase counts smoothed by a prior of what they are likely to
  buy — ``item_weight`` × an item-item score and ``popularity_weight`` × popularity, each
  scaled to [0, 1] per member. The model's item-item score uses a shrunk cosine (co-buyers /
  (sqrt(buyers × buyers) + ``MODEL_SHRINK``), so that pairs seen with few buyers count less),
  and each item the member bought weighs 1 or log(1 + times bought) in it. For *new to you*
  the own items are excluded, so the model is item-item with a popularity prior. The blend
  (both weights and the history's weighting) is **chosen per task on a validation split
  carved out of the training period** (``Validation``): the training period's last third (or
  the horizon's length) plays the test period, the blends of ``NEXT_BASKET_GRID`` and
  ``NEW_TO_YOU_GRID`` are scored there by mean NDCG@k over at most ``VALIDATION_MEMBERS``
  members, and the best is refit on the whole training period; nothing of the test period is
  read. Given both weights, that blend is used for both tasks instead. Optionally recent
  purchases weigh more (``half_life_days``); on the bench's data (no drift in tastes) it did
  not help, so it is off by default. The shrinkage was chosen on grocery-like sets of two
  other seeds (5 and 6) than the bench's and the tests'.

Everything is vectorised over sparse member × item matrices holding only each member's
candidates (own items, neighbours of own items, popular items), scored in blocks of members, so
a million basket lines evaluate in seconds and a bounded amount of memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from scipy import sparse

from habitue.analytics.errors import InvalidAnalyticsInput

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

TASKS = ("next basket", "new to you")
METHODS = ("model", "popularity", "item-item", "repurchase")
NEIGHBOURS = 20
FILL_EXTRA = 100
MEMBER_BLOCK = 2048
ITEM_WEIGHT = 1.0
POPULARITY_WEIGHT = 0.5
_CELLS = 1 << 22  # dense score cells per block (32 MiB of float64)
_FILL = 1e-6  # popularity's weight where a method ranks nothing


@dataclass(frozen=True, slots=True)
class MethodScore:
    """Mean metrics of one method on one task."""

    method: str
    precision: float
    recall: float
    ndcg: float
    hit_rate: float


@dataclass(frozen=True, slots=True)
class TaskResult:
    """One task's members evaluated and the scores of every method, model first."""

    task: str
    members: int
    scores: tuple[MethodScore, ...]

    def by_method(self) -> dict[str, MethodScore]:
        return {s.method: s for s in self.scores}


@dataclass(frozen=True, slots=True)
class ProtocolResult:
    """The result of the protocol: split, list length, both tasks, time taken."""

    split_at: datetime
    k: int
    train_lines: int
    test_lines: int
    tasks: tuple[TaskResult, ...]
    seconds: float = field(default=0.0)
    validation: Validation | None = None
    """How the model's blend of each task was chosen."""

    def task(self, name: str) -> TaskResult:
        return next(t for t in self.tasks if t.task == name)


def _encode(values: Any) -> tuple[list[str], IntArray]:
    """The distinct values in order of first appearance, and each row's position among them."""
    encoded = pc.dictionary_encode(values.cast(pa.string()))
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    indices = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    return [str(v) for v in encoded.dictionary.to_pylist()], indices


class _Lines:
    """Basket lines (member_id, item_id, occurred_at) encoded: members and items numbered in
    order of first appearance (the columns of every matrix), times in microseconds."""

    def __init__(self, baskets: Any) -> None:
        table = baskets if isinstance(baskets, pa.Table) else pa.table(baskets)
        missing = {"member_id", "item_id", "occurred_at"} - set(table.column_names)
        if missing:
            raise InvalidAnalyticsInput(f"baskets need columns {sorted(missing)}")
        table = table.filter(pc.is_valid(table.column("item_id")))
        table = table.filter(pc.is_valid(table.column("member_id")))
        self.members, self.member = _encode(table.column("member_id"))
        self.items, self.item = _encode(table.column("item_id"))
        at = table.column("occurred_at").cast(pa.timestamp("us", "UTC"))
        self.micros = np.asarray(at.to_numpy(), dtype="datetime64[us]").astype(np.int64)


def _top_columns(values: FloatArray, keep: int) -> IntArray:
    """The columns of each row's `keep` largest values; of values tied at the cut, the lowest
    columns (a partition's own choice among ties differs between NumPy versions)."""
    cut = -np.partition(-values, keep - 1, axis=1)[:, keep - 1]
    above = values > cut[:, None]
    tied = values == cut[:, None]
    wanted = keep - above.sum(axis=1)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= wanted[:, None]))
    return np.nonzero(chosen)[1].reshape(values.shape[0], keep)


def item_neighbours(
    bought: sparse.csr_matrix, neighbours: int = NEIGHBOURS, shrink: float = 0.0
) -> sparse.csr_matrix:
    """Item × item cosine over buyers (zero diagonal), each row pruned to its top neighbours;
    with `shrink`, co-buyers / (sqrt(buyers × buyers) + shrink): pairs seen with few buyers
    count less."""
    binary = bought.copy()
    binary.data[:] = 1.0
    by_item = binary.T.tocsr()
    buyers = np.asarray(binary.sum(axis=0)).reshape(-1)
    inverse = 1.0 / np.sqrt(np.where(buyers > 0, buyers, 1.0))
    n_items = by_item.shape[0]
    rows: list[IntArray] = []
    cols: list[IntArray] = []
    vals: list[FloatArray] = []
    block = max(1, min(n_items, _CELLS // max(n_items, 1)))
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        co = np.asarray((by_item[start:stop] @ binary).todense(), dtype=np.float64)
        if shrink:
            co /= np.sqrt(buyers[start:stop, None] * buyers[None, :]) + shrink
        else:
            co *= inverse[start:stop, None] * inverse[None, :]
        co[np.arange(stop - start), np.arange(start, stop)] = 0.0
        keep = min(neighbours, n_items)
        top = _top_columns(co, keep) if keep < n_items else None
        if top is None:
            top = np.broadcast_to(np.arange(n_items), co.shape)
        values = np.take_along_axis(co, top, axis=1)
        nonzero = values > 0
        rows.append(np.repeat(np.arange(start, stop), nonzero.sum(axis=1)))
        cols.append(top[nonzero])
        vals.append(values[nonzero])
    if not vals:
        return sparse.csr_matrix((n_items, n_items))
    return sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_items, n_items),
    )


def _scale_rows(scores: sparse.csr_matrix) -> sparse.csr_matrix:
    """Each row divided by its largest value (rows without values stay empty)."""
    top = np.asarray(scores.max(axis=1).todense()).reshape(-1) if scores.nnz else None
    if top is None:
        return scores
    scaled: sparse.csr_matrix = sparse.diags(1.0 / np.where(top > 0, top, 1.0)) @ scores
    return scaled.tocsr()


def _on(pattern: sparse.csr_matrix, values: FloatArray) -> sparse.csr_matrix:
    """The item values at the pattern's cells (a member × item matrix)."""
    out = pattern.tocsr().copy()
    out.data = values[out.indices].astype(np.float64)
    return out


def _top_k(scores: sparse.csr_matrix, k: int) -> IntArray:
    """Top-k columns per row of a sparse score matrix, best first (ties: lower column first);
    -1 where a row has fewer than k cells. Cells must hold positive scores."""
    scores = scores.tocsr()
    scores.eliminate_zeros()
    scores.sort_indices()
    n_rows = scores.shape[0]
    if scores.nnz == 0:
        return np.full((n_rows, k), -1, dtype=np.int64)
    rows = np.repeat(np.arange(n_rows), np.diff(scores.indptr))
    data = scores.data
    highest = float(data.max())
    # A cheap sort on row + (a descending share of the score) finds each row's k-th best
    # score, up to rounding: the key rounds more as the row number grows (at most about
    # 1e-12 × highest with blocks of 2,048 rows), so a ranking by it alone would depend on a
    # member's place in the block. The cells that can be in the top k (within 1e-9 × highest
    # of that score, or all of a row with fewer than k) are then ranked exactly.
    approx = np.argsort(rows + 0.5 * (1.0 - data / highest), kind="stable")
    approx_rank = np.arange(approx.size) - scores.indptr[rows[approx]]
    at_k = approx[approx_rank == k - 1]
    kth = np.zeros(n_rows)
    kth[rows[at_k]] = data[at_k]
    cells = np.flatnonzero(data >= kth[rows] - 1e-9 * highest)  # by row, then column
    # Exactly: one stable sort of row × (distinct scores) + the score's rank, so cells of a
    # row with equal scores keep their (column) order.
    distinct, rank = np.unique(-data[cells], return_inverse=True)
    order = cells[
        np.argsort(rows[cells] * np.int64(distinct.size) + rank.reshape(-1), kind="stable")
    ]
    ordered_rows = rows[order]
    place = np.arange(order.size) - np.searchsorted(ordered_rows, ordered_rows)
    keep = place < k
    top = np.full((n_rows, k), -1, dtype=np.int64)
    top[ordered_rows[keep], place[keep]] = scores.indices[order][keep]
    return top


def _without(scores: sparse.csr_matrix, owned: sparse.csr_matrix) -> sparse.csr_matrix:
    """The scores with the owned cells removed."""
    left: sparse.csr_matrix = (scores - scores.multiply(owned)).tocsr()
    left.eliminate_zeros()
    return left


@dataclass
class _Sums:
    precision: float = 0.0
    recall: float = 0.0
    ndcg: float = 0.0
    hits: float = 0.0


def _accumulate(sums: _Sums, top: IntArray, relevant: sparse.csr_matrix, k: int) -> None:
    n_rows = top.shape[0]
    if n_rows == 0:
        return
    rows = np.repeat(np.arange(n_rows), top.shape[1])
    cols = top.reshape(-1)
    valid = cols >= 0
    flat = np.zeros(cols.size, dtype=bool)
    flat[valid] = np.asarray(relevant[rows[valid], cols[valid]]).reshape(-1) > 0
    hit = flat.reshape(top.shape)
    discounts = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    counts = np.diff(relevant.indptr)
    ideal_n = np.minimum(counts, k)
    ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])[ideal_n]
    n_hits = hit.sum(axis=1)
    sums.precision += float((n_hits / k).sum())
    sums.recall += float((n_hits / np.maximum(ideal_n, 1)).sum())
    sums.ndcg += float(((hit * discounts).sum(axis=1) / np.where(ideal > 0, ideal, 1.0)).sum())
    sums.hits += float((n_hits > 0).sum())


@dataclass(frozen=True, slots=True)
class Blend:
    """The model's weights on one task: the item-item score's and popularity's, each scaled
    to [0, 1] per member, added to the member's own purchase counts (next basket only)."""

    item_weight: float
    popularity_weight: float
    history: str = "binary"
    """What each item the member bought weighs in the item-item score: 1 ("binary"), or
    log(1 + times bought) ("log")."""


DEFAULT_BLEND = Blend(ITEM_WEIGHT, POPULARITY_WEIGHT)
NEXT_BASKET_GRID: tuple[Blend, ...] = (
    DEFAULT_BLEND,
    *(
        Blend(i, p, h)
        for h in ("binary", "log")
        for i in (0.05, 0.1, 0.25, 0.5, 1.0)
        for p in (0.05, 0.25, 0.5, 1.0, 2.0)
        if (i, p, h) != (ITEM_WEIGHT, POPULARITY_WEIGHT, "binary")
    ),
)
"""The blends tried on the validation split for the next basket (the default first: it wins
ties). The own counts weigh 1: the prior is worth from a twentieth of a purchase to three."""
NEW_TO_YOU_GRID: tuple[Blend, ...] = (
    DEFAULT_BLEND,
    *(
        Blend(1.0, p, h)
        for h in ("binary", "log")
        for p in (0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
        if (p, h) != (POPULARITY_WEIGHT, "binary")
    ),
)
"""The blends tried for new items: without own counts only popularity's share of the prior
matters."""
MODEL_SHRINK = 10.0
"""The model's item-item similarity: co-buyers / (sqrt(buyers × buyers) + 10), a cosine that
trusts pairs seen with few buyers less (chosen on grocery-like sets of seeds 5 and 6: 0, 2,
5, 10 and 20 tried; 10 and 20 within 0.0005 NDCG@10 of each other, the smaller kept)."""
VALIDATION_MEMBERS = 4_000
"""At most this many members (a seeded sample) score the blends on the validation split."""


@dataclass(frozen=True, slots=True)
class Validation:
    """How the blends were chosen: the inner split carved out of the training period, the
    members scored there, and each task's blend with its validation NDCG."""

    split_at: datetime | None
    members: int
    blends: dict[str, Blend]
    ndcg: dict[str, float]


def describe(blend: Blend) -> str:
    """A blend in words, as the CLI and the bench print it."""
    history = "log(1 + times bought)" if blend.history == "log" else "1"
    return (
        f"{blend.item_weight:g} × item-item (each item bought weighs {history}) + "
        f"{blend.popularity_weight:g} × popularity"
    )


def _fill_items(popularity: FloatArray, k: int) -> IntArray:
    """The k + FILL_EXTRA most bought items (ties: the lower column), bought at least once."""
    fill_items = np.argsort(-popularity, kind="stable")[: k + FILL_EXTRA]
    return fill_items[popularity[fill_items] > 0]


def _fill(rows: int, fill_items: IntArray, n_items: int) -> sparse.csr_matrix:
    """A rows × items matrix of ones on the fill items of every row."""
    return sparse.csr_matrix(
        (
            np.ones(rows * fill_items.size),
            (np.repeat(np.arange(rows), fill_items.size), np.tile(fill_items, rows)),
        ),
        shape=(rows, n_items),
    )


class _Split:
    """The matrices of one time split: what is known before it and what is bought after."""

    def __init__(
        self,
        shape: tuple[int, int],
        member: IntArray,
        item: IntArray,
        micros: IntArray,
        train: npt.NDArray[np.bool_],
        test: npt.NDArray[np.bool_],
        split_us: int,
        half_life_days: float | None,
        k: int,
    ) -> None:
        self.counts = sparse.csr_matrix(
            (np.ones(int(train.sum())), (member[train], item[train])), shape=shape
        )
        age_days = (split_us - micros[train]) / 86_400e6
        weights = (
            np.ones(age_days.size)
            if half_life_days is None
            else np.exp2(-age_days / half_life_days)
        )
        self.decayed = sparse.csr_matrix((weights, (member[train], item[train])), shape=shape)
        bought = self.counts.copy()
        bought.data[:] = 1.0
        self.bought = bought
        future = sparse.csr_matrix(
            (np.ones(int(test.sum())), (member[test], item[test])), shape=shape
        )
        future.data[:] = 1.0
        self.future = future
        self.popularity = np.asarray(bought.sum(axis=0), dtype=np.float64).reshape(-1)
        self.pop_scaled = self.popularity / max(float(self.popularity.max(initial=0.0)), 1.0)
        self.similarity = item_neighbours(bought)
        self.model_similarity = item_neighbours(bought, shrink=MODEL_SHRINK)
        has_history = np.diff(bought.indptr) > 0
        has_future = np.diff(future.indptr) > 0
        self.evaluated = np.flatnonzero(has_history & has_future)
        new = future - future.multiply(bought)
        new.eliminate_zeros()
        self.new = new.tocsr()
        # Popular items fill what a method cannot rank: the most bought, enough for k new ones.
        self.fill_items = _fill_items(self.popularity, k)
        self.n_items = shape[1]

    def blocks(self, members: IntArray) -> Any:
        """The members in blocks, with what every method scores them on."""
        for start in range(0, members.size, MEMBER_BLOCK):
            yield _Block(self, members[start : start + MEMBER_BLOCK])


class _Block:
    """One block of members of a split: their history, candidates and relevant items."""

    def __init__(self, split: _Split, chosen: IntArray) -> None:
        rows = chosen.size
        fill_items = split.fill_items
        self.chosen = chosen
        self.history = split.bought[chosen]
        self.fill = _fill(rows, fill_items, split.n_items)
        self.item_item = (self.history @ split.similarity).tocsr()
        self.candidates = (self.history + (self.item_item > 0) + self.fill).tocsr()
        self.popular = _on(self.fill, split.pop_scaled)
        self.relevant = split.future[chosen]
        new_relevant = split.new[chosen]
        self.with_new = np.flatnonzero(np.diff(new_relevant.indptr) > 0)
        self.new_relevant = new_relevant[self.with_new]
        self.owned = self.history[self.with_new]
        self.own = split.decayed[chosen]
        self.prior_next: dict[str, tuple[sparse.csr_matrix, sparse.csr_matrix]] = {}
        self.prior_new: dict[str, tuple[sparse.csr_matrix, sparse.csr_matrix]] = {}
        counts = split.counts[chosen]
        for history in ("binary", "log"):
            item_item, popular_next, popular_new = _prior(
                counts, split.model_similarity, self.fill, split.pop_scaled, history
            )
            self.prior_next[history] = (item_item, popular_next)
            self.prior_new[history] = (item_item, popular_new)

    def model_next(self, blend: Blend) -> sparse.csr_matrix:
        """The model's scores for the next basket: own counts plus the prior."""
        return _next_scores(self.own, *self.prior_next[blend.history], blend)

    def model_new(self, blend: Blend, *, everyone: bool = False) -> sparse.csr_matrix:
        """The model's scores for new items, own items out: of the members with new items in
        the test period (those evaluated), or with `everyone` of every member of the block."""
        item_item, popular = self.prior_new[blend.history]
        if everyone:
            return _new_scores(item_item, popular, self.history, blend)
        rows = self.with_new
        return _new_scores(item_item[rows], popular[rows], self.owned, blend)


def _prior(
    counts: sparse.csr_matrix,
    similarity: sparse.csr_matrix,
    fill: sparse.csr_matrix,
    pop_scaled: FloatArray,
    history: str,
) -> tuple[sparse.csr_matrix, sparse.csr_matrix, sparse.csr_matrix]:
    """The model's prior for members of purchase `counts` (member × item): the item-item
    score over the shrunk `similarity` scaled to [0, 1] per member (each item bought weighing
    1, or log(1 + times bought) with `history` "log"), and popularity on the candidates of
    each task (next basket: own items, neighbours, `fill`; new to you: neighbours, `fill`)."""
    bought = counts.copy()
    bought.data[:] = 1.0
    weights = bought
    if history == "log":
        weights = counts.copy()
        weights.data = np.log1p(weights.data)
    model_ii = (weights @ similarity).tocsr()
    reach = ((model_ii > 0) + fill).tocsr()
    return (
        _scale_rows(model_ii),
        _on((bought + reach).tocsr(), pop_scaled),
        _on(reach, pop_scaled),
    )


def _next_scores(
    own: sparse.csr_matrix, item_item: sparse.csr_matrix, popular: sparse.csr_matrix, blend: Blend
) -> sparse.csr_matrix:
    """The model's score for the next basket: own counts + the blend of the prior."""
    scores: sparse.csr_matrix = (
        own + blend.item_weight * item_item + blend.popularity_weight * popular
    ).tocsr()
    return scores


def _new_scores(
    item_item: sparse.csr_matrix,
    popular: sparse.csr_matrix,
    owned: sparse.csr_matrix,
    blend: Blend,
) -> sparse.csr_matrix:
    """The model's score for new items: the blend of the prior, the `owned` items out."""
    score = blend.item_weight * item_item + blend.popularity_weight * popular
    return _without(score.tocsr(), owned)


def _choose(split: _Split, members: IntArray, k: int) -> tuple[dict[str, Blend], dict[str, float]]:
    """Each task's blend of highest mean NDCG@k over `members` (the first on ties)."""
    sums = {
        (task, blend): _Sums()
        for task, grid in (("next basket", NEXT_BASKET_GRID), ("new to you", NEW_TO_YOU_GRID))
        for blend in grid
    }
    with_new = 0
    for block in split.blocks(members):
        with_new += int(block.with_new.size)
        for blend in NEXT_BASKET_GRID:
            top = _top_k(block.model_next(blend), k)
            _accumulate(sums["next basket", blend], top, block.relevant, k)
        for blend in NEW_TO_YOU_GRID:
            top = _top_k(block.model_new(blend), k)
            _accumulate(sums["new to you", blend], top, block.new_relevant, k)
    blends: dict[str, Blend] = {}
    ndcg: dict[str, float] = {}
    for task, grid, n in (
        ("next basket", NEXT_BASKET_GRID, members.size),
        ("new to you", NEW_TO_YOU_GRID, with_new),
    ):
        best = max(grid, key=lambda b: sums[task, b].ndcg)  # max keeps the first on ties
        blends[task] = best if n else DEFAULT_BLEND
        ndcg[task] = sums[task, best].ndcg / n if n else 0.0
    return blends, ndcg


def evaluate_protocol(
    baskets: Any,
    *,
    split_at: datetime,
    k: int = 10,
    horizon_days: int | None = None,
    half_life_days: float | None = None,
    item_weight: float | None = None,
    popularity_weight: float | None = None,
) -> ProtocolResult:
    """Run the protocol (module docstring) on basket lines (member_id, item_id, occurred_at).

    The model's blend is chosen per task on a validation split carved out of the training
    period (`Validation`), unless both weights are given (then used for both tasks)."""
    started = time.perf_counter()
    if split_at.tzinfo is None:
        raise InvalidAnalyticsInput("split_at must be timezone-aware")
    if not 1 <= k <= 100:
        raise InvalidAnalyticsInput("k must be between 1 and 100")
    lines = _Lines(baskets)
    member, item, micros = lines.member, lines.item, lines.micros
    n_members, n_items = len(lines.members), len(lines.items)
    split_us = _micros(split_at)
    train = micros < split_us
    test = ~train
    if horizon_days is not None:
        test &= micros < _micros(split_at + timedelta(days=horizon_days))
    shape = (n_members, n_items)
    if item_weight is not None and popularity_weight is not None:
        fixed = Blend(item_weight, popularity_weight)
        validation = Validation(None, 0, {t: fixed for t in TASKS}, {})
    else:
        validation = _validate(
            shape, member, item, micros, train, split_us, half_life_days, k, horizon_days
        )
    blend_next, blend_new = validation.blends["next basket"], validation.blends["new to you"]
    split = _Split(shape, member, item, micros, train, test, split_us, half_life_days, k)
    sums = {(t, m): _Sums() for t in TASKS for m in METHODS}
    new_members = 0
    for block in split.blocks(split.evaluated):
        chosen = block.chosen
        new_members += int(block.with_new.size)
        popular = block.popular
        scores = {
            "popularity": popular,
            "item-item": block.item_item + _FILL * popular,
            "repurchase": split.counts[chosen] + _FILL * popular,
        }
        _accumulate(sums["next basket", "model"], _top_k(block.model_next(blend_next), k),
                    block.relevant, k)  # fmt: skip
        _accumulate(sums["new to you", "model"], _top_k(block.model_new(blend_new), k),
                    block.new_relevant, k)  # fmt: skip
        for method, score in scores.items():
            _accumulate(sums["next basket", method], _top_k(score, k), block.relevant, k)
            top = _top_k(_without(score[block.with_new], block.owned), k)
            _accumulate(sums["new to you", method], top, block.new_relevant, k)
    results = []
    for task, members in (("next basket", int(split.evaluated.size)), ("new to you", new_members)):
        scored = []
        for method in METHODS:
            s = sums[task, method]
            n = max(members, 1)
            scored.append(
                MethodScore(method, s.precision / n, s.recall / n, s.ndcg / n, s.hits / n)
            )
        results.append(TaskResult(task, members, tuple(scored)))
    return ProtocolResult(
        split_at=split_at,
        k=k,
        train_lines=int(train.sum()),
        test_lines=int(test.sum()),
        tasks=tuple(results),
        seconds=time.perf_counter() - started,
        validation=validation,
    )


def _micros(at: datetime) -> int:
    return int(np.datetime64(at.astimezone(UTC).replace(tzinfo=None), "us").astype(np.int64))


def _validate(
    shape: tuple[int, int],
    member: IntArray,
    item: IntArray,
    micros: IntArray,
    train: npt.NDArray[np.bool_],
    split_us: int,
    half_life_days: float | None,
    k: int,
    horizon_days: int | None,
) -> Validation:
    """Choose each task's blend on the training period alone: its last third (or the
    horizon's length, at most half of it) plays the test period, what comes before it the
    training; a seeded sample of at most `VALIDATION_MEMBERS` members is scored. Nothing of
    the test period is read."""
    if not train.any():
        return Validation(None, 0, {t: DEFAULT_BLEND for t in TASKS}, {})
    first = int(micros[train].min())
    length = (split_us - first) // 3
    if horizon_days is not None:
        length = min(horizon_days * 86_400_000_000, (split_us - first) // 2)
    length = max(length, 1)
    inner_us = split_us - length
    inner_train = micros < inner_us
    inner_test = train & ~inner_train
    inner = _Split(
        shape, member, item, micros, inner_train, inner_test, inner_us, half_life_days, k
    )
    members = inner.evaluated
    if members.size > VALIDATION_MEMBERS:
        rng = np.random.default_rng(0)
        members = np.sort(rng.choice(members, VALIDATION_MEMBERS, replace=False))
    blends, ndcg = _choose(inner, members, k)
    at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=inner_us)
    return Validation(at, int(members.size), blends, ndcg)


# The model as the API serves it ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServedModel:
    """The protocol's model fitted on a whole history, to recommend to one member at a time:
    the same shrunk item-item similarity, popularity and blends chosen on validation as
    `evaluate_protocol` (`recommend_top_k` scores through the same functions)."""

    items: tuple[str, ...]
    similarity: sparse.csr_matrix
    popularity: FloatArray
    """Distinct buyers of each item, in the order of ``items``."""
    validation: Validation

    @property
    def blends(self) -> dict[str, Blend]:
        return self.validation.blends


def fit_served(
    baskets: Any,
    *,
    until: datetime | None = None,
    k: int = 10,
    validation: Validation | None = None,
) -> ServedModel:
    """The model on the basket lines before `until` (default: all of them), its blends chosen
    on a validation split of that period exactly as `evaluate_protocol` chooses them for a
    test period starting at `until` (NDCG@`k`, at most `VALIDATION_MEMBERS` members), or
    those of `validation` (an earlier fit's: the validation is most of the cost)."""
    if until is not None and until.tzinfo is None:
        raise InvalidAnalyticsInput("until must be timezone-aware")
    lines = _Lines(in_time_order(baskets))
    shape = (len(lines.members), len(lines.items))
    if until is not None:
        until_us = _micros(until)
    else:
        until_us = int(lines.micros.max(initial=0)) + 1
    train = lines.micros < until_us
    if validation is None:
        validation = _validate(
            shape, lines.member, lines.item, lines.micros, train, until_us, None, k, None
        )
    bought = sparse.csr_matrix(
        (np.ones(int(train.sum())), (lines.member[train], lines.item[train])), shape=shape
    )
    bought.data[:] = 1.0
    return ServedModel(
        items=tuple(lines.items),
        similarity=item_neighbours(bought, shrink=MODEL_SHRINK),
        popularity=np.asarray(bought.sum(axis=0), dtype=np.float64).reshape(-1),
        validation=validation,
    )


def in_time_order(baskets: Any) -> pa.Table:
    """The lines by time, then item id: the items' numbering (which breaks ties between equal
    scores) then depends on the history alone, not on the order a database returns it in."""
    table = baskets if isinstance(baskets, pa.Table) else pa.table(baskets)
    if not {"occurred_at", "item_id"} <= set(table.column_names):
        return table  # `_Lines` says what is missing
    return table.sort_by([("occurred_at", "ascending"), ("item_id", "ascending")])


def served_task(history: Iterable[str], exclude: Iterable[str]) -> str:
    """The task a request is: "new to you" when every item the member bought is excluded,
    else "next basket" (what they bought may be recommended again)."""
    bought = set(history)
    return "new to you" if bought and bought <= set(exclude) else "next basket"


def recommend_top_k(
    model: ServedModel, history: Iterable[str], *, k: int = 10, exclude: Iterable[str] = ()
) -> list[str]:
    """Up to k items for a member who bought `history` (a line each), never one in `exclude`:
    the model's top k for the task of the request (`served_task`), with that task's blend."""
    if not 1 <= k <= 100:
        raise InvalidAnalyticsInput("k must be between 1 and 100")
    history = list(history)
    exclude = list(exclude)
    n_items = len(model.items)
    if n_items == 0:
        return []
    task = served_task(history, exclude)
    blend = model.blends[task]
    lookup = {item: i for i, item in enumerate(model.items)}
    own = np.fromiter((lookup[i] for i in history if i in lookup), dtype=np.int64)
    counts = sparse.csr_matrix(
        (np.ones(own.size), (np.zeros(own.size, dtype=np.int64), own)), shape=(1, n_items)
    )
    fill = _fill(1, _fill_items(model.popularity, k), n_items)
    pop_scaled = model.popularity / max(float(model.popularity.max(initial=0.0)), 1.0)
    item_item, popular_next, popular_new = _prior(
        counts, model.similarity, fill, pop_scaled, blend.history
    )
    if task == "next basket":
        scores = _next_scores(counts, item_item, popular_next, blend)
    else:
        owned = counts.copy()
        owned.data[:] = 1.0
        scores = _new_scores(item_item, popular_new, owned, blend)
    gone = np.fromiter((lookup[i] for i in set(exclude) if i in lookup), dtype=np.int64)
    if gone.size:
        excluded = sparse.csr_matrix(
            (np.ones(gone.size), (np.zeros(gone.size, dtype=np.int64), gone)),
            shape=(1, n_items),
        )
        scores = _without(scores, excluded)
    return [model.items[i] for i in _top_k(scores, k)[0] if i >= 0]


def model_top_k(
    baskets: Any, *, split_at: datetime, k: int = 10
) -> dict[str, dict[str, list[str]]]:
    """The evaluated model's top k of each task for every member with a history before
    `split_at`, as `evaluate_protocol` ranks them (it scores, of these, the members with lines
    after `split_at`, and for new to you those with new items); for checking what is served
    against what is evaluated."""
    lines = _Lines(baskets)
    shape = (len(lines.members), len(lines.items))
    split_us = _micros(split_at)
    train = lines.micros < split_us
    test = ~train
    validation = _validate(
        shape, lines.member, lines.item, lines.micros, train, split_us, None, k, None
    )
    split = _Split(shape, lines.member, lines.item, lines.micros, train, test, split_us, None, k)
    ranked: dict[str, dict[str, list[str]]] = {task: {} for task in TASKS}
    with_history = np.flatnonzero(np.diff(split.bought.indptr) > 0)
    for block in split.blocks(with_history):
        for task, top, rows in (
            ("next basket", _top_k(block.model_next(validation.blends["next basket"]), k),
             block.chosen),
            ("new to you",
             _top_k(block.model_new(validation.blends["new to you"], everyone=True), k),
             block.chosen),
        ):  # fmt: skip
            for member, row in zip(rows, top, strict=True):
                ranked[task][lines.members[member]] = [lines.items[i] for i in row if i >= 0]
    return ranked
