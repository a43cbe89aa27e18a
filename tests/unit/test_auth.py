"""The token file and the bearer header, exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.errors import StartupError
from server.transport.auth import RECHECK_SECONDS, TokenFile, bearer


def test_bearer_takes_the_token_of_a_bearer_header_only() -> None:
    assert bearer((("x-request-id", "r1"), ("authorization", "Bearer abc "))) == b"abc"
    assert bearer((("authorization", "bearer abc"),)) == b"abc"  # the scheme is case-blind
    assert bearer((("authorization", "Basic abc"),)) is None
    assert bearer((("authorization", b"Bearer abc"),)) == b"abc"
    assert bearer(()) is None
    assert bearer(None) is None


def test_a_token_file_is_read_again_after_the_interval_and_keeps_its_last_good_tokens(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tokens"
    path.write_text("# comment\none\n\n  two  \n")
    tokens = TokenFile(path)
    tokens.load()
    assert tokens.tokens(0.0) == (b"one", b"two")
    assert tokens.allows(b"two", 0.0) and not tokens.allows(b"tw", 0.0)
    path.write_text("three\n")
    assert tokens.tokens(RECHECK_SECONDS / 2) == (b"one", b"two")  # not looked at yet
    assert tokens.tokens(2 * RECHECK_SECONDS) == (b"three",)
    path.write_text("")
    assert tokens.tokens(4 * RECHECK_SECONDS) == (b"three",)  # an empty file is a bad rotation
    path.unlink()
    assert tokens.tokens(6 * RECHECK_SECONDS) == (b"three",)


def test_a_missing_or_empty_token_file_stops_the_server(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=r"auth_tokens: cannot read .*: No such file"):
        TokenFile(tmp_path / "absent").load()
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(StartupError, match=r"auth_tokens: .* lists no tokens"):
        TokenFile(tmp_path / "empty").load()
