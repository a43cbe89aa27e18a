"""What a load test sends: a scenario file (YAML or JSON) and the pool of
requests drawn from it.

The pool is built once, before the clock starts, so drawing a request during the
run costs an index and nothing more: the generator is never the bottleneck.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from server.clients.channels import Tls
from server.proto.shoprank.v1 import ranking_pb2 as pb

KINDS = ("rank", "retrieval", "search", "invalid")


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the key."""


@dataclass(frozen=True)
class Weighted:
    """A value and its relative weight in a distribution."""

    value: float
    weight: float


@dataclass(frozen=True)
class Scenario:
    """The mix of calls. Every share is a fraction of all calls, in [0, 1]."""

    user_skew: float = 1.0  # Zipf exponent over users ordered by activity; 0 = uniform
    user_limit: int = 0  # the most active users to draw from; 0 = all
    candidates: tuple[Weighted, ...] = (Weighted(100, 1.0),)  # candidates per call
    retrieval_share: float = 0.0  # calls with no candidates: the server retrieves
    query_share: float = 0.0  # calls with a query, drawn from the workspace's searches
    top_k: int = 100
    page_size: int = 0  # 0 = the server's default
    explain_share: float = 0.0
    deadlines_ms: tuple[Weighted, ...] = (Weighted(5000, 1.0),)
    invalid_share: float = 0.0  # malformed on purpose: each must get INVALID_ARGUMENT
    tls: Tls | None = None
    token_env: str = ""  # the variable holding a bearer token; never the token itself
    seed: int = 0
    pool: int = 2000  # requests built before the run, then cycled

    def token(self, environ: dict[str, str]) -> str:
        """The bearer token token_env names; "" when the scenario sends none."""
        if not self.token_env:
            return ""
        token = environ.get(self.token_env, "")
        if not token:
            raise ScenarioError(f"token_env: ${self.token_env} is not set or empty")
        return token

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("candidates", "deadlines_ms"):
                value = [{"value": w.value, "weight": w.weight} for w in value]
            elif isinstance(value, Tls):
                value = {k.name: getattr(value, k.name) for k in fields(value)}
            out[f.name] = value
        return out


def load(path: Path) -> Scenario:
    """A Scenario from a YAML or JSON file (JSON is YAML); ScenarioError names the key."""
    try:
        body = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ScenarioError(f"cannot read scenario {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ScenarioError(f"scenario {path} is not YAML or JSON: {error}") from None
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ScenarioError(f"scenario {path} must be a mapping of settings")
    return parse(body, str(path))


def parse(body: dict[str, Any], where: str = "scenario") -> Scenario:
    known = {f.name for f in fields(Scenario)}
    unknown = sorted(set(body) - known - {"users"})
    if unknown:
        raise ScenarioError(f"{where}: unknown key {unknown[0]!r}; known: {sorted(known)}")
    values: dict[str, Any] = {}
    users = body.get("users", {})
    if not isinstance(users, dict):
        raise ScenarioError(f"{where}: users must be a mapping with skew and limit")
    values["user_skew"] = _number(users.get("skew", 1.0), "users.skew", where, low=0)
    values["user_limit"] = int(_number(users.get("limit", 0), "users.limit", where, low=0))
    for key in ("retrieval_share", "query_share", "explain_share", "invalid_share"):
        if key in body:
            values[key] = _number(body[key], key, where, low=0, high=1)
    for key in ("top_k", "page_size", "seed"):
        if key in body:
            values[key] = int(_number(body[key], key, where, low=0))
    if "pool" in body:
        values["pool"] = int(_number(body["pool"], "pool", where, low=1))
    if "candidates" in body:
        values["candidates"] = _distribution(body["candidates"], "candidates", where, low=1)
    if "deadlines_ms" in body:
        values["deadlines_ms"] = _distribution(body["deadlines_ms"], "deadlines_ms", where)
    if "tls" in body and body["tls"] is not None:
        tls = body["tls"]
        if not isinstance(tls, dict) or set(tls) - {"ca", "cert", "key", "server_name"}:
            raise ScenarioError(f"{where}: tls takes ca, cert, key and server_name")
        if bool(tls.get("cert")) != bool(tls.get("key")):
            raise ScenarioError(f"{where}: tls.cert and tls.key go together")
        values["tls"] = Tls(**{k: str(v) for k, v in tls.items()})
    if "token_env" in body:
        values["token_env"] = str(body["token_env"])
    shares = sum(values.get(k, 0.0) for k in ("retrieval_share", "query_share", "invalid_share"))
    if shares > 1:
        raise ScenarioError(f"{where}: retrieval, query and invalid shares add up to over 1")
    return Scenario(**values)


def _number(value: object, key: str, where: str, low: float = 0, high: float = 1e12) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ScenarioError(f"{where}: {key} must be a number in [{low:g}, {high:g}]")
    return float(value)


def _distribution(value: object, key: str, where: str, low: float = 0) -> tuple[Weighted, ...]:
    """A number, or a list of {value, weight}: `[{value: 100, weight: 3}, ...]`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (Weighted(_number(value, key, where, low=low), 1.0),)
    if not isinstance(value, list) or not value:
        raise ScenarioError(f"{where}: {key} must be a number or a list of {{value, weight}}")
    out = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict) or set(entry) - {"value", "weight"} or "value" not in entry:
            raise ScenarioError(f"{where}: {key}[{i}] must be {{value: V, weight: W}}")
        out.append(
            Weighted(
                _number(entry["value"], f"{key}[{i}].value", where, low=low),
                _number(entry.get("weight", 1.0), f"{key}[{i}].weight", where, low=1e-12),
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class Shot:
    """One call to make: the request, its deadline and what kind of call it is."""

    request: pb.RankRequest
    deadline_s: float
    kind: str


@dataclass(frozen=True)
class Population:
    """What the workspace offers to draw from; read once, by `read_population`."""

    users: np.ndarray  # ordered most active first
    items: np.ndarray
    queries: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))


def read_population(workspace_events: Path, catalog: Path) -> Population:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not workspace_events.exists() or not catalog.exists():
        raise FileNotFoundError(
            f"no data set at {workspace_events.parent} to draw users and items from; pass --home"
        )
    events = pq.read_table(workspace_events)
    counts = pc.value_counts(events["user_id"]).to_pylist()
    counts.sort(key=lambda c: (-c["counts"], str(c["values"])))  # most active first, stable
    users = np.array([str(c["values"]) for c in counts], dtype=object)
    items = pq.read_table(catalog, columns=["item_id"])["item_id"].to_numpy(zero_copy_only=False)
    queries = np.array([], dtype=object)
    if "query" in events.column_names:
        found = pc.drop_null(pc.unique(events["query"])).to_pylist()
        queries = np.array(sorted(q for q in found if q and q.strip()), dtype=object)
    return Population(users=users, items=items.astype(object), queries=queries)


def build_pool(scenario: Scenario, population: Population, stream: int = 0) -> list[Shot]:
    """scenario.pool calls drawn with the scenario's seed; `stream` gives each
    worker process its own draws from the same distributions."""
    if population.users.size == 0 or population.items.size == 0:
        raise ScenarioError("the workspace has no users or no items to draw calls from")
    rng = np.random.default_rng([scenario.seed, stream])
    users = population.users[: scenario.user_limit or None]
    user_p = zipf(users.size, scenario.user_skew)
    n = scenario.pool
    kinds = rng.choice(len(KINDS), size=n, p=_kind_shares(scenario, population))
    picked_users = rng.choice(users.size, size=n, p=user_p)
    counts = _draw(rng, scenario.candidates, n).astype(int)
    deadlines = _draw(rng, scenario.deadlines_ms, n) / 1e3
    # An invalid call tests validation alone: it gets the longest deadline offered.
    longest = max(w.value for w in scenario.deadlines_ms) / 1e3
    explain = rng.random(n) < scenario.explain_share
    shots = []
    for i in range(n):
        kind = KINDS[kinds[i]]
        request = pb.RankRequest(
            user_id=str(users[picked_users[i]]),
            top_k=scenario.top_k,
            page_size=scenario.page_size,
            explain=bool(explain[i]),
        )
        if kind != "retrieval":
            size = min(int(counts[i]), population.items.size)
            request.candidate_item_ids.extend(rng.choice(population.items, size, replace=False))
        if kind == "search":
            request.query = str(population.queries[rng.integers(population.queries.size)])
        deadline = float(deadlines[i])
        if kind == "invalid":
            _break(request, int(rng.integers(2)))
            deadline = longest
        shots.append(Shot(request, deadline, kind))
    return shots


def zipf(n: int, skew: float) -> np.ndarray:
    """P(the user of activity rank r) proportional to 1 / r**skew, r = 1..n."""
    weights = np.arange(1, n + 1, dtype=np.float64) ** -skew
    return np.asarray(weights / weights.sum())


def _kind_shares(scenario: Scenario, population: Population) -> list[float]:
    query = scenario.query_share
    if query and population.queries.size == 0:
        raise ScenarioError("query_share is set but the workspace's events carry no queries")
    rest = 1.0 - scenario.retrieval_share - query - scenario.invalid_share
    return [max(rest, 0.0), scenario.retrieval_share, query, scenario.invalid_share]


def _draw(rng: np.random.Generator, dist: tuple[Weighted, ...], n: int) -> np.ndarray:
    weights = np.array([w.weight for w in dist])
    values = np.array([w.value for w in dist])
    return np.asarray(values[rng.choice(len(dist), size=n, p=weights / weights.sum())])


def _break(request: pb.RankRequest, how: int) -> None:
    """Two malformations every server version refuses: a missing user, an empty item id."""
    if how == 0:
        request.user_id = ""
    else:
        request.candidate_item_ids.append("")


def fixed_pool(requests: list[pb.RankRequest], deadline_s: float) -> list[Shot]:
    """Given requests, for benchmarks that build their own."""
    return [Shot(r, deadline_s, "rank") for r in requests]
