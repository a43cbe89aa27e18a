"""Real Redis, Redis Cluster and PostgreSQL for the online-store tests.

Each is started on free loopback ports with its files in a temp dir, and
stopped (or dropped) when its `with` block ends, however it ends. Never the
system Redis on 6379: tests must not share state with anything.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

from server.processes import free_ports

REDIS_BINARIES = ("redis-server", "redis-cli")
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
STARTUP_SECONDS = 20.0


def missing_redis_binaries() -> list[str]:
    return [name for name in REDIS_BINARIES if shutil.which(name) is None]


def _wait_for(ready: Callable[[], object], what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} while starting")
        try:
            if ready():
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {STARTUP_SECONDS:g}s")


@dataclass(frozen=True)
class _Node:
    directory: Path
    port: int
    options: Sequence[str] = ()


def _command(node: _Node) -> list[str]:
    """redis-server on loopback, its files in its directory, saving only when told."""
    return [
        "redis-server",
        "--port", str(node.port),
        "--bind", "127.0.0.1",
        "--dir", str(node.directory),
        "--logfile", "redis.log",
        "--save", "",
        "--appendonly", "no",
        *node.options,
    ]  # fmt: skip


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if the process outstays 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def _spawned(node: _Node) -> Iterator[tuple[subprocess.Popen[bytes], redis.Redis]]:
    """One redis-server, no persistence, logging into its directory; always stopped."""
    node.directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(_command(node), stdin=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=5)
    try:
        yield process, client
    finally:
        client.close()
        _terminate(process)


@contextmanager
def _redis_servers(nodes: Sequence[_Node]) -> Iterator[list[redis.Redis]]:
    """Start all, then wait for each to answer: they boot in parallel."""
    with ExitStack() as stack:
        started = [stack.enter_context(_spawned(node)) for node in nodes]
        for node, (process, client) in zip(nodes, started, strict=True):
            _wait_for(client.ping, f"redis-server on port {node.port}", process)
        yield [client for _, client in started]


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A standalone Redis; yields its Feast connection string."""
    (port,) = free_ports(1)
    with _redis_servers([_Node(directory, port)]):
        yield f"127.0.0.1:{port}"


class RedisProcess:
    """A standalone redis-server to take down and bring back on the same port: killed
    with SIGKILL, hung with SIGSTOP, restarted from the snapshot save() wrote."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        (self.port,) = free_ports(1)
        self.url = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # The default dbfilename, dump.rdb, is what save() writes and a start loads.
        command = _command(_Node(self.directory, self.port))
        self._process = process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        try:
            _wait_for(client.ping, f"redis-server on port {self.port}", process)
        finally:
            client.close()

    def save(self) -> None:
        """A snapshot on disk, which the next start() loads."""
        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=30) as client:
            client.save()

    def kill(self) -> None:
        assert self._process is not None
        self._process.kill()
        self._process.wait()

    def pause(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)  # accepts connections, answers nothing

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        _terminate(process)


@contextmanager
def redis_cluster(directory: Path, nodes: int = 3) -> Iterator[str]:
    """A Redis Cluster of `nodes` masters, no replicas; yields its Feast connection string."""
    ports = free_ports(2 * nodes)
    # Each node also listens on a cluster bus port; pinning it keeps it off
    # port + 10000, which nothing reserved.
    data_ports, bus_ports = ports[:nodes], ports[nodes:]
    members = [
        _Node(directory / f"node-{port}", port, _cluster_options(bus))
        for port, bus in zip(data_ports, bus_ports, strict=True)
    ]
    with _redis_servers(members) as clients:
        addresses = [f"127.0.0.1:{port}" for port in data_ports]
        create = ["--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"]
        subprocess.run(
            ["redis-cli", *create],
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=STARTUP_SECONDS,
        )
        _wait_until_cluster_ok(clients)
        yield ",".join(addresses)


def _cluster_options(bus_port: int) -> list[str]:
    return [
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-port", str(bus_port),
        # Gossip runs at least every half of this: a short timeout settles a
        # new cluster sooner, yet still tolerates a busy test machine.
        "--cluster-node-timeout", "2000",
    ]  # fmt: skip


def _wait_until_cluster_ok(clients: list[redis.Redis]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        states = [client.cluster("INFO")["cluster_state"] for client in clients]
        if all(state == "ok" for state in states):
            return
        time.sleep(0.1)
    raise TimeoutError(f"Redis Cluster not ok after {STARTUP_SECONDS:g}s: {states}")


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL; yields its SQLAlchemy URL, then drops it."""
    name = f"shoprank_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        raise RuntimeError(
            f"the registry tests need PostgreSQL at {POSTGRES_ADMIN} (trust auth): {error}"
        ) from None
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=5) as admin:
            # FORCE: servers and Feast's engine pools may still hold connections.
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
