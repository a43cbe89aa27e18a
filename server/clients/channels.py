"""How a client reaches the server: plaintext or TLS (mutual with a client
certificate), and a bearer token. One place for `rank`, `eval`, `loadtest` and
the Locust file."""

from __future__ import annotations

import ipaddress
import json
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

    def channel(self, address: str, options: Options | None = None) -> grpc.Channel:
        target, balancing = balanced(address)
        options = [*(options or []), *balancing]
        if self.tls is None:
            return grpc.insecure_channel(target, options=options)
        credentials, names = credentials_for(self.tls)
        return grpc.secure_channel(target, credentials, options=options + names)

    def aio_channel(self, address: str, options: Options | None = None) -> grpc.aio.Channel:
        target, balancing = balanced(address)
        options = [*(options or []), *balancing]
        if self.tls is None:
            return grpc.aio.insecure_channel(target, options=options)
        credentials, names = credentials_for(self.tls)
        return grpc.aio.secure_channel(target, credentials, options=options + names)


# gRPC's own client-side balancing: a subchannel per address, calls spread in turn.
ROUND_ROBIN = ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]}))


def balanced(address: str) -> tuple[str, Options]:
    """The gRPC target for an address, and the options that balance over it.

    - HOST:PORT, one server: as it is.
    - IP:PORT,IP:PORT,...: every one of them, round robin (gRPC's ipv4:/ipv6: targets
      take IP addresses only; names go through DNS).
    - dns:///NAME:PORT: every address the name resolves to, round robin, re-resolved
      as gRPC does (a headless Kubernetes Service, a compose service name).
    """
    if address.startswith("dns:"):
        return address, [ROUND_ROBIN]
    if "," not in address:
        return address, []
    parts = [part.strip() for part in address.split(",")]
    hosts = []
    for part in parts:
        host, _, port = part.rpartition(":")
        host = host.strip("[]")
        try:
            version = ipaddress.ip_address(host).version
        except ValueError:
            raise ValueError(
                f"several servers must be given as IP:PORT ({part!r} is not); "
                "for a name, use dns:///NAME:PORT"
            ) from None
        if not port.isdigit():
            raise ValueError(f"{part!r} has no port; give IP:PORT")
        hosts.append((version, host, port))
    if len({version for version, _, _ in hosts}) > 1:
        raise ValueError("several servers must be all IPv4 or all IPv6")
    if hosts[0][0] == 4:
        return "ipv4:" + ",".join(f"{host}:{port}" for _, host, port in hosts), [ROUND_ROBIN]
    return "ipv6:" + ",".join(f"[{host}]:{port}" for _, host, port in hosts), [ROUND_ROBIN]


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
