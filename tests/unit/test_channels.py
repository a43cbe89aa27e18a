"""How a client's --server becomes a gRPC target, balanced over several servers."""

from __future__ import annotations

import json
import re

import pytest

from server.clients.channels import ROUND_ROBIN, balanced


def test_balanced_targets_spread_several_servers_round_robin() -> None:
    assert balanced("127.0.0.1:50051") == ("127.0.0.1:50051", [])
    assert balanced("10.0.0.1:1, 10.0.0.2:2") == ("ipv4:10.0.0.1:1,10.0.0.2:2", [ROUND_ROBIN])
    assert balanced("[::1]:1,[::2]:2") == ("ipv6:[::1]:1,[::2]:2", [ROUND_ROBIN])
    assert balanced("dns:///ranker:50051") == ("dns:///ranker:50051", [ROUND_ROBIN])
    assert json.loads(str(ROUND_ROBIN[1])) == {"loadBalancingConfig": [{"round_robin": {}}]}
    for bad, message in (
        ("10.0.0.1:1,ranker:2", "'ranker:2' is not"),
        ("10.0.0.1:1,10.0.0.2", "'10.0.0.2' is not"),
        ("10.0.0.1:1,10.0.0.2:x", "has no port"),
        ("10.0.0.1:1,[::1]:2", "all IPv4 or all IPv6"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            balanced(bad)
