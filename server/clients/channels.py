"""How a client reaches the server: plaintext or TLS (mutual with a client
certificate), and a bearer token. One place for `rank`, `eval`, `loadtest` and
the Locust file."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

Options = list[tuple[str, str | int]]


@dataclass(frozen=True)
class Tls:
    ca: str = ""  # PEM file of the roots to trust; "" = the system's
    cert: str = ""  # client certificate, for mutual TLS
    key: str = ""
    server_name: str = ""  # overrides the name checked in the server's certificate


@dataclass(frozen=True)
class Access:
    tls: Tls | None = None
    token: str = ""

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def channel(self, target: str, options: Options | None = None) -> grpc.Channel:
        options = list(options or [])
        if self.tls is None:
            return grpc.insecure_channel(target, options=options)
        credentials, names = credentials_for(self.tls)
        return grpc.secure_channel(target, credentials, options=options + names)

    def aio_channel(self, target: str, options: Options | None = None) -> grpc.aio.Channel:
        options = list(options or [])
        if self.tls is None:
            return grpc.aio.insecure_channel(target, options=options)
        credentials, names = credentials_for(self.tls)
        return grpc.aio.secure_channel(target, credentials, options=options + names)


def credentials_for(tls: Tls) -> tuple[grpc.ChannelCredentials, Options]:
    """The channel credentials a Tls asks for, and the options that go with them."""
    options: Options = []
    if tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca),
        private_key=_read(tls.key),
        certificate_chain=_read(tls.cert),
    )
    return credentials, options


def _read(path: str) -> bytes | None:
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as error:
        raise ValueError(f"tls: cannot read {path}: {error.strerror}") from None
