"""The ranker's search rows: from each training search event, the candidates the
server would retrieve for its query, labelled by what the shopper then carted or
bought in that session, each with the query's relevance parts.

Per search event (a seeded sample; at or after the first feature snapshot): the
best `candidates` items by the hybrid relevance over BM25's top and the text
vectors' nearest (the server's search, server/ranking/stages/retrieve.py, exact
here), plus the session's positives where retrieval missed them, plus
`negatives` uniform catalogue items (the irrelevant tail a request's 200
retrieved candidates carry, which the top alone never shows); the parts are
computed over that set, as QueryMatch computes them over a request's candidates
(features.relevance), with has_query 1. The rows then join the interaction rows
(parts and has_query 0) in the one point-in-time read of training.dataset, so
the ranker learns, from what shoppers did, how much a query weighs against taste.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from features import names
from features.lexical import LexicalIndex
from features.model_inputs import QUERY_INPUTS
from features.relevance import query_parts
from features.schema import POSITIVE_EVENTS
from features.text import item_text, query_key, terms
from features.text_encoder import TextEncoder, exported
from features.workspace import Workspace


def item_text_matrix(workspace: Workspace, ids: list[str]) -> np.ndarray | None:
    """The newest item text vectors, row i for ids[i] (zeros where none); None if absent."""
    files = sorted(workspace.item_text_path.glob("*.parquet"))
    if not files or not exported(workspace.text_encoder_dir):
        return None
    table = pq.read_table(files[-1], columns=[names.ITEM_KEY, names.TEXT_VECTOR])
    found = table[names.TEXT_VECTOR].to_pylist()
    dim = len(found[0]) if found else 0
    row = {item: i for i, item in enumerate(ids)}
    matrix = np.zeros((len(ids), dim), dtype=np.float32)
    for item, vector in zip(table[names.ITEM_KEY].to_pylist(), found, strict=True):
        if item in row:
            matrix[row[item]] = vector
    return matrix


def search_events(workspace: Workspace, max_events: int, seed: int) -> pd.DataFrame:
    """(user_id, query, ts, positives) per search event whose session has a positive."""
    files = [str(f) for f in workspace.event_files()]
    columns = ["user_id", "item_id", "event_type", "ts", "session_id", "query"]
    events = ds.dataset(files, format="parquet").to_table(columns=columns)
    first = pc.min(pq.read_table(workspace.user_features_path, columns=["event_timestamp"])[0])
    events = events.filter(pc.greater_equal(events["ts"], first))
    positive = events.filter(pc.is_in(events["event_type"], pa.array(sorted(POSITIVE_EVENTS))))
    bought: dict[str, set[str]] = defaultdict(set)
    for session, item in zip(
        positive["session_id"].to_pylist(), positive["item_id"].to_pylist(), strict=True
    ):
        if session is not None:
            bought[session].add(item)
    searches = events.filter(
        pc.and_(pc.equal(events["event_type"], "search"), pc.is_valid(events["query"]))
    ).to_pandas()
    searches = searches[searches["session_id"].map(lambda s: bool(bought.get(s)))]
    if len(searches) > max_events:
        searches = searches.sample(n=max_events, random_state=seed)
    searches = searches.sort_values("ts", kind="stable")
    searches["positives"] = searches["session_id"].map(lambda s: sorted(bought[s]))
    return searches[["user_id", "query", "ts", "positives"]].reset_index(drop=True)


def search_rows(
    workspace: Workspace,
    share: float,
    candidates: int = 30,
    max_events: int = 20_000,
    seed: int = 0,
    negatives: int = 20,
) -> pd.DataFrame | None:
    """Entity rows (user_id, item_id, event_timestamp, label, *QUERY_INPUTS, query); None
    where the workspace has no item text vectors (no encoder) to search with."""
    catalog = pq.read_table(workspace.catalog_path, columns=["item_id", "title", "attributes"])
    ids = catalog["item_id"].to_pylist()
    matrix = item_text_matrix(workspace, ids)
    if matrix is None:
        return None
    found = search_events(workspace, max_events, seed)
    if found.empty:
        return None
    texts = [
        item_text(title, attributes)
        for title, attributes in zip(
            catalog["title"].to_pylist(), catalog["attributes"].to_pylist(), strict=True
        )
    ]
    lexical = LexicalIndex(texts)
    encoder = TextEncoder(workspace.text_encoder_dir, threads=0).load()
    queries = sorted({query_key(q) for q in found["query"]})
    vectors = dict(zip(queries, encoder.encode(queries), strict=True))
    row_of = {item: i for i, item in enumerate(ids)}
    weight = np.float32(share)
    rng = np.random.default_rng(seed)
    out: dict[str, list[object]] = defaultdict(list)
    for user, query, ts, positives in found.itertuples(index=False):
        words = terms(query)
        if not words:
            continue
        relevance = lexical.matched(words)[1]
        cosine = matrix @ vectors[query_key(query)]
        rows = retrieved(relevance, cosine, weight, candidates)
        wanted = [row_of[item] for item in positives if item in row_of]
        # Uniform catalogue items too: retrieval's top are nearly all relevant, and
        # without irrelevant rows the ranker cannot learn what relevance is worth.
        drawn = rng.integers(0, len(ids), size=negatives)
        rows = np.unique(np.concatenate([rows, np.asarray(wanted, np.int64), drawn]))
        parts = query_parts(relevance[rows], cosine[rows], weight)
        chosen = set(wanted)
        for j, row in enumerate(rows.tolist()):
            out["user_id"].append(user)
            out["item_id"].append(ids[row])
            out["event_timestamp"].append(ts)
            out["label"].append(1.0 if row in chosen else 0.0)
            for name, values in zip(QUERY_INPUTS[:3], (parts[2], parts[0], parts[1]), strict=True):
                out[name].append(float(values[j]))
            out[QUERY_INPUTS[3]].append(1.0)
            out["query"].append(query)  # for checks; not an input
    return pd.DataFrame(out) if out else None


def retrieved(relevance: np.ndarray, cosine: np.ndarray, share: np.float32, k: int) -> np.ndarray:
    """The k best rows by the fused relevance over BM25's k best and the k nearest texts."""
    k = min(k, relevance.size)
    matched = np.flatnonzero(relevance > 0)
    lexical = matched[np.argsort(-relevance[matched], kind="stable")[:k]]
    near = np.argsort(-cosine, kind="stable")[:k]
    rows = np.unique(np.concatenate([lexical, near]))
    fused = query_parts(relevance[rows], cosine[rows], share)[2]
    keep = fused > 0
    rows, fused = rows[keep], fused[keep]
    picked: np.ndarray = rows[np.argsort(-fused, kind="stable")[:k]]
    return picked
