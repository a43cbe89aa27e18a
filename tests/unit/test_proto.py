"""The contract ships inside the package, equal to the one `make proto` compiles."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_proto_is_the_contract_byte_for_byte() -> None:
    shipped = ROOT / "server" / "proto" / "shoprank" / "v1" / "ranking.proto"
    assert (
        shipped.read_bytes() == (ROOT / "protos" / "shoprank" / "v1" / "ranking.proto").read_bytes()
    )
