"""Malformed and extreme requests against a real server: every one gets a clear
status, never INTERNAL or UNKNOWN, never a hang, and the server serves on."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc

BROKEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}
# Valid ids of the test workspace, mixed with noise: some calls then rank for real.
KNOWN_USERS = [f"user_{i:06d}" for i in range(5)]
KNOWN_ITEMS = [f"item_{i:06d}" for i in range(20)]
UINT32 = st.integers(0, 2**32 - 1)
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=90)  # protobuf strings are UTF-8
ids = st.one_of(text, st.sampled_from(KNOWN_ITEMS), st.just(""), st.just("x" * 65))
requests = st.builds(
    pb.RankRequest,
    user_id=st.one_of(text, st.sampled_from(KNOWN_USERS)),
    candidate_item_ids=st.lists(ids, max_size=60),
    top_k=st.one_of(UINT32, st.integers(0, 30)),
    page_size=st.one_of(UINT32, st.integers(0, 5)),
    query=st.one_of(text, st.text(max_size=10_000), st.sampled_from(["c01", "b002 c03", "t05"])),
    explain=st.booleans(),
    retrieval_size=st.one_of(st.just(0), st.integers(0, 60), UINT32),
    exclude_interacted=st.booleans(),
    block_item_ids=st.lists(ids, max_size=5),
    query_matches_only=st.booleans(),
    max_per_category=st.one_of(st.just(0), st.integers(0, 3), UINT32),
    diversity_window=st.one_of(st.just(0), st.integers(0, 10), UINT32),
    mmr_lambda=st.one_of(st.just(0.0), st.floats(width=32)),
    exploration_temperature=st.one_of(st.just(0.0), st.floats(width=32)),
    seed=st.integers(0, 2**64 - 1),
)
SERVER_RETRIEVAL_SIZE = 50  # the fixture's max_candidates caps the default of 200
# Metadata gRPC lets a client send: lowercase keys, printable ASCII values, or
# bytes under a -bin key.
keys = st.from_regex(r"\A[a-z0-9][a-z0-9_.-]{0,30}\Z").filter(
    lambda k: not k.startswith("grpc-") and k not in ("te", "content-type", "user-agent")
)
metadata = st.lists(
    st.one_of(
        st.tuples(
            keys.filter(lambda k: not k.endswith("-bin")), st.from_regex(r"\A[ -~]{0,200}\Z")
        ),
        st.tuples(keys.map(lambda k: f"{k}-bin"), st.binary(max_size=200)),
    ),
    max_size=6,
)


def check_pages(pages: list[pb.RankResponse], request: pb.RankRequest) -> None:
    items = [item for page in pages for item in page.items]
    assert [i.rank for i in items] == list(range(1, len(items) + 1))
    scores = [i.score for i in items]
    reordered = request.max_per_category or request.mmr_lambda or request.exploration_temperature
    if not reordered:  # the rules that reorder say so in parts.rule instead
        assert scores == sorted(scores, reverse=True)
    if request.candidate_item_ids:
        assert len(items) <= len(set(request.candidate_item_ids))
    else:  # retrieval
        assert len(items) <= (request.retrieval_size or SERVER_RETRIEVAL_SIZE)
    assert not {i.item_id for i in items} & set(request.block_item_ids)
    if request.top_k:
        assert len(items) <= request.top_k


@settings(max_examples=4000, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=requests, sent=metadata)
def test_requests_and_metadata_never_break_the_server(
    channel: grpc.Channel, request: pb.RankRequest, sent: list[tuple[str, str | bytes]]
) -> None:
    try:
        pages = list(pb_grpc.RankerStub(channel).Rank(request, timeout=20, metadata=sent))
    except grpc.RpcError as error:
        assert error.code() not in BROKEN, (error.code(), error.details())
        assert error.details()  # a message the caller can act on
        return
    check_pages(pages, request)


@settings(max_examples=1200, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=400))
def test_bytes_that_are_no_request_get_invalid_argument(channel: grpc.Channel, raw: bytes) -> None:
    rank = channel.unary_stream(
        "/shoprank.v1.Ranker/Rank", request_serializer=None, response_deserializer=None
    )
    try:
        pages = [pb.RankResponse.FromString(page) for page in rank(raw, timeout=20)]
    except grpc.RpcError as error:
        assert error.code() not in BROKEN, (error.code(), error.details())
        if error.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a shoprank" in error.details():
            assert error.details().startswith("the request is not a shoprank.v1.RankRequest: ")
        return
    check_pages(pages, pb.RankRequest.FromString(raw))


def test_the_server_is_serving_after_the_fuzzing(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    pages = list(
        pb_grpc.RankerStub(channel).Rank(
            pb.RankRequest(user_id=KNOWN_USERS[1], candidate_item_ids=KNOWN_ITEMS), timeout=20
        )
    )
    assert len([i for p in pages for i in p.items]) == len(KNOWN_ITEMS)
