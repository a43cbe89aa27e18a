"""The server's transport credentials, from the settings' PEM files."""

from __future__ import annotations

from pathlib import Path

import grpc

from server.config import Settings
from server.errors import StartupError


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials (mutual when tls_client_ca is set), or None for plaintext."""
    if not settings.tls_cert:
        return None
    roots = _read(settings.tls_client_ca, "tls_client_ca") if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(_read(settings.tls_key, "tls_key"), _read(settings.tls_cert, "tls_cert"))],
        root_certificates=roots,
        require_client_auth=roots is not None,
    )


def _read(path: str, name: str) -> bytes:
    try:
        body = Path(path).read_bytes()
    except OSError as error:
        raise StartupError(f"{name}: cannot read {path}: {error.strerror}") from None
    if b"-----BEGIN" not in body:
        raise StartupError(f"{name}: {path} is not a PEM file")
    return body
