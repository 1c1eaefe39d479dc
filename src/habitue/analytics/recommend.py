"""Item-to-item recommendations from baskets, with popular items for cold start.

The model is the cosine similarity between the item columns of a binary member × item matrix
(who bought what): two items are similar when the same members buy both. A member's score for an
item is the sum of its similarities to the items the member bought. Items without a score, and
members without a history, fall back to the most popular items (most buyers); ties are broken by
popularity, then by item id, so recommendations are reproducible.

Baskets are an Arrow table (or anything with these columns) of ``member_id``, ``item_id`` and
``occurred_at`` (timestamp, UTC), one row per basket line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from scipy import sparse

from habitue.analytics.errors import InvalidAnalyticsInput

IntArray = npt.NDArray[np.int64]

_BATCH = 1024
_CELLS = 1 << 24


@dataclass(frozen=True, slots=True)
class ItemSimilarityModel:
    """Fitted item-to-item model; items are ordered by popularity, most bought first."""

    items: tuple[str, ...]
    similarity: sparse.csr_matrix
    buyers: IntArray
    """Distinct members who bought each item, in the order of ``items``."""

    def index_of(self, item_ids: Iterable[str]) -> IntArray:
        """Positions of the known items among those given (unknown items are skipped)."""
        lookup = {item: i for i, item in enumerate(self.items)}
        return np.fromiter((lookup[item] for item in item_ids if item in lookup), dtype=np.int64)


def _columns(baskets: Any) -> pa.Table:
    table = baskets if isinstance(baskets, pa.Table) else pa.table(baskets)
    missing = {"member_id", "item_id"} - set(table.column_names)
    if missing:
        raise InvalidAnalyticsInput(f"baskets need columns {sorted(missing)}")
    return table


def _encode(values: pa.ChunkedArray | pa.Array) -> tuple[list[str], IntArray]:
    encoded = pc.dictionary_encode(values.cast(pa.string()))
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    dictionary = [str(v) for v in encoded.dictionary.to_pylist()]
    indices = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    return dictionary, indices


def fit_item_similarity(baskets: Any) -> ItemSimilarityModel:
    """Cosine similarity between items over who bought them, with a zero diagonal."""
    table = _columns(baskets)
    if table.num_rows == 0:
        return ItemSimilarityModel((), sparse.csr_matrix((0, 0)), np.zeros(0, np.int64))
    members, member_index = _encode(table.column("member_id"))
    items, item_index = _encode(table.column("item_id"))
    bought = sparse.csr_matrix(
        (np.ones(item_index.size), (member_index, item_index)),
        shape=(len(members), len(items)),
    )
    bought.data[:] = 1.0  # duplicates were summed: a member bought an item or did not
    buyers = np.asarray(bought.sum(axis=0), dtype=np.int64).reshape(-1)
    # Most bought first, then by item id, so that a stable sort of scores breaks ties that way.
    order = np.lexsort((np.array(items), -buyers))
    bought = bought[:, order]
    buyers = buyers[order]
    co_bought = (bought.T @ bought).tocsr()
    norms = np.sqrt(buyers.astype(np.float64))
    inverse = sparse.diags(1.0 / np.where(norms > 0, norms, 1.0))
    similarity = (inverse @ co_bought @ inverse).tocsr()
    similarity.setdiag(0.0)
    similarity.eliminate_zeros()
    return ItemSimilarityModel(tuple(items[i] for i in order), similarity, buyers)


def _top_k(
    model: ItemSimilarityModel,
    histories: sparse.csr_matrix,
    excluded: sparse.csr_matrix,
    k: int,
) -> IntArray:
    """Top-k item positions per row (−1 where fewer items than k remain)."""
    n_rows, n_items = histories.shape
    result = np.full((n_rows, k), -1, dtype=np.int64)
    take = min(k, n_items)
    # Dense score blocks of at most _CELLS floats (128 MiB), whatever the catalogue size.
    batch = max(1, min(_BATCH, _CELLS // max(n_items, 1)))
    for start in range(0, n_rows, batch):
        stop = min(start + batch, n_rows)
        scores = np.asarray((histories[start:stop] @ model.similarity).todense())
        block = excluded[start:stop].tocoo()
        scores[block.row, block.col] = -np.inf
        # Items are stored most popular first, so a stable sort breaks ties by popularity.
        ranked = np.argsort(-scores, axis=1, kind="stable")[:, :take]
        allowed = np.take_along_axis(scores, ranked, axis=1) > -np.inf
        result[start:stop, :take] = np.where(allowed, ranked, -1)
    return result


def _history_matrix(model: ItemSimilarityModel, histories: Sequence[Iterable[str]]) -> Any:
    rows: list[int] = []
    cols: list[int] = []
    for row, items in enumerate(histories):
        positions = model.index_of(items)
        rows.extend([row] * positions.size)
        cols.extend(positions.tolist())
    matrix = sparse.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(len(histories), len(model.items))
    )
    matrix.data[:] = 1.0
    return matrix


def recommend(
    model: ItemSimilarityModel,
    history: Iterable[str],
    *,
    k: int = 10,
    exclude: Iterable[str] = (),
) -> list[str]:
    """Up to k item ids for a member who bought ``history``, never one in ``exclude``."""
    if k < 1:
        raise InvalidAnalyticsInput("k must be at least 1")
    histories = _history_matrix(model, [list(history)])
    excluded = _history_matrix(model, [list(exclude)])
    return [model.items[i] for i in _top_k(model, histories, excluded, k)[0] if i >= 0]


def popular_items(
    model: ItemSimilarityModel, *, k: int = 10, exclude: Iterable[str] = ()
) -> list[str]:
    """The k items with the most buyers, for members with no history (cold start)."""
    skip = set(exclude)
    return [item for item in model.items if item not in skip][:k]


def recommend_for_members(
    baskets: Any,
    *,
    k: int = 10,
    as_of: datetime | None = None,
    exclude_recent_days: int | None = None,
    model: ItemSimilarityModel | None = None,
) -> dict[str, list[str]]:
    """Recommendations per member of the baskets, leaving out items bought in the recent days."""
    table = _columns(baskets)
    fitted = fit_item_similarity(table) if model is None else model
    member_items: dict[str, list[str]] = {}
    recent: dict[str, list[str]] = {}
    cutoff = None
    if exclude_recent_days is not None:
        if as_of is None or as_of.tzinfo is None:
            raise InvalidAnalyticsInput("exclude_recent_days needs an aware as_of")
        cutoff = as_of - timedelta(days=exclude_recent_days)
    times = table.column("occurred_at").to_pylist() if cutoff is not None else None
    for i, (member, item) in enumerate(
        zip(table.column("member_id").to_pylist(), table.column("item_id").to_pylist(), strict=True)
    ):
        member_items.setdefault(str(member), []).append(str(item))
        if times is not None and cutoff is not None and times[i] >= cutoff:
            recent.setdefault(str(member), []).append(str(item))
    members = sorted(member_items)
    histories = _history_matrix(fitted, [member_items[m] for m in members])
    excluded = _history_matrix(fitted, [recent.get(m, []) for m in members])
    top = _top_k(fitted, histories, excluded, k)
    return {
        member: [fitted.items[i] for i in row if i >= 0]
        for member, row in zip(members, top, strict=True)
    }


@dataclass(frozen=True, slots=True)
class OfflineEvaluation:
    """Precision@k and NDCG@k of the model and of the popularity baseline on a time split."""

    k: int
    members_evaluated: int
    model_precision: float
    model_ndcg: float
    popularity_precision: float
    popularity_ndcg: float


def _precision_ndcg(
    ranked: IntArray, relevant: sparse.csr_matrix, relevant_counts: IntArray, k: int
) -> tuple[float, float]:
    n_rows = ranked.shape[0]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    precision = np.zeros(n_rows)
    ndcg = np.zeros(n_rows)
    for row in range(n_rows):
        truth = set(relevant.indices[relevant.indptr[row] : relevant.indptr[row + 1]].tolist())
        hits = np.array([int(i) in truth for i in ranked[row] if i >= 0], dtype=np.float64)
        gains = np.zeros(k)
        gains[: hits.size] = hits
        precision[row] = gains.sum() / k
        ideal = discounts[: min(int(relevant_counts[row]), k)].sum()
        ndcg[row] = float(gains @ discounts) / ideal if ideal > 0 else 0.0
    return float(precision.mean()), float(ndcg.mean())


def evaluate_time_split(baskets: Any, *, split_at: datetime, k: int = 10) -> OfflineEvaluation:
    """Fit on baskets before split_at; score the top k new items of each returning member after."""
    if split_at.tzinfo is None:
        raise InvalidAnalyticsInput("split_at must be timezone-aware")
    if k < 1:
        raise InvalidAnalyticsInput("k must be at least 1")
    table = _columns(baskets)
    before = pc.less(table.column("occurred_at"), pa.scalar(split_at, pa.timestamp("us", "UTC")))
    train = table.filter(before)
    test = table.filter(pc.invert(before))
    model = fit_item_similarity(train)
    train_items: dict[str, set[str]] = {}
    for member, item in zip(
        train.column("member_id").to_pylist(), train.column("item_id").to_pylist(), strict=True
    ):
        train_items.setdefault(str(member), set()).add(str(item))
    test_items: dict[str, set[str]] = {}
    for member, item in zip(
        test.column("member_id").to_pylist(), test.column("item_id").to_pylist(), strict=True
    ):
        if str(member) in train_items and str(item) not in train_items[str(member)]:
            test_items.setdefault(str(member), set()).add(str(item))
    members = sorted(test_items)
    if not members or not model.items:
        return OfflineEvaluation(k, 0, 0.0, 0.0, 0.0, 0.0)
    histories = _history_matrix(model, [sorted(train_items[m]) for m in members])
    relevant = _history_matrix(model, [sorted(test_items[m]) for m in members])
    model_top = _top_k(model, histories, histories, k)
    no_history = sparse.csr_matrix(histories.shape)
    popular_top = _top_k(model, no_history, histories, k)
    counts = np.array([len(test_items[m]) for m in members], dtype=np.int64)
    model_precision, model_ndcg = _precision_ndcg(model_top, relevant, counts, k)
    popular_precision, popular_ndcg = _precision_ndcg(popular_top, relevant, counts, k)
    return OfflineEvaluation(
        k=k,
        members_evaluated=len(members),
        model_precision=model_precision,
        model_ndcg=model_ndcg,
        popularity_precision=popular_precision,
        popularity_ndcg=popular_ndcg,
    )
