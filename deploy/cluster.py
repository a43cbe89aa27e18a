"""The production topology on loopback, with no Docker: `make cluster`, `make cluster-down`.

    python -m deploy.cluster up   [--home var/cluster] [--free-ports] [--users N ...]
    python -m deploy.cluster down [--home var/cluster] [--drop-database]

`up` starts, in order, and returns once every part answers:
- a Redis Cluster of 3 masters (the online store) and a database on the local
  PostgreSQL (the shared Feast registry);
- the one-shot jobs, as Kubernetes runs its Jobs: data, features apply, backfill,
  materialize and train, when the workspace has no model yet (else apply and
  materialize, since the Redis Cluster starts empty);
- two `shoprank serve` replicas, one process each;
- nginx (Debian's), with deploy/nginx/shoprank.conf.template, the file compose
  uses too: gRPC load balancing, next-upstream for calls that reached no replica.
What runs, on which ports, with which pid and command, is written to
<home>/cluster.json, which `down` reads to stop it all. Every process's log is
in <home>/logs. Variables of the caller's (SHOPRANK_MODEL_POLL_SECONDS, ...)
reach the jobs and the replicas.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import string
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from server.processes import free_ports

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "nginx" / "shoprank.conf.template"
SHOPRANK = [sys.executable, "-m", "server.cli"]
POSTGRES = "postgres@127.0.0.1:5432"
STARTUP_SECONDS = 120.0
# Fixed ports for people (`make cluster`); tests ask for free ones.
DEFAULT_PORTS = {
    "nginx": 50050,
    "ranker_a": 50061,
    "ranker_b": 50062,
    "metrics_a": 9161,
    "metrics_b": 9162,
    "redis_1": 7001,
    "redis_2": 7002,
    "redis_3": 7003,
    "bus_1": 17001,
    "bus_2": 17002,
    "bus_3": 17003,
}
REDIS_NODES = ("redis_1", "redis_2", "redis_3")
RANKERS = (("ranker_a", "metrics_a"), ("ranker_b", "metrics_b"))


class ClusterError(Exception):
    """A part did not start; the message says which and where its log is."""


@dataclass
class Process:
    name: str
    pid: int
    command: list[str]
    log: str


@dataclass
class Cluster:
    home: str
    database: str
    ports: dict[str, int]
    env: dict[str, str]  # the SHOPRANK_* settings every job and replica gets
    processes: list[Process] = field(default_factory=list)
    drained: list[str] = field(default_factory=list)  # replicas nginx sends no call to

    @property
    def nginx(self) -> str:
        return f"127.0.0.1:{self.ports['nginx']}"

    @property
    def rankers(self) -> list[str]:
        return [f"127.0.0.1:{self.ports[ranker]}" for ranker, _ in RANKERS]

    def process(self, name: str) -> Process:
        return next(p for p in self.processes if p.name == name)

    def save(self) -> None:
        state = Path(self.home) / "cluster.json"
        state.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, home: Path) -> Cluster:
        body = json.loads((home / "cluster.json").read_text())
        body["processes"] = [Process(**p) for p in body["processes"]]
        return cls(**body)


def render_nginx(listen: str, ranker_a: str, ranker_b: str, down: Sequence[str] = ()) -> str:
    """The template with its ${SHOPRANK_*} names filled, nginx's own $names kept (as
    the nginx image's envsubst of defined variables does); the replicas in `down`
    marked so, which is how a replica is drained before it is stopped."""
    values = {
        "SHOPRANK_LB_LISTEN": listen,
        "SHOPRANK_RANKER_A": ranker_a,
        "SHOPRANK_RANKER_B": ranker_b,
    }
    text = string.Template(TEMPLATE.read_text()).safe_substitute(values)
    for address in down:
        text = text.replace(f"server {address} ", f"server {address} down ", 1)
    return text


def nginx_main_conf(
    prefix: Path, listen: str, rankers: Sequence[str], down: Sequence[str] = ()
) -> Path:
    """nginx.conf for a loopback nginx kept under `prefix`: the rendered template in
    its http{} block, and every path nginx writes inside the prefix."""
    prefix.mkdir(parents=True, exist_ok=True)
    for temp in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "temp" / temp).mkdir(parents=True, exist_ok=True)
    a, b = (rankers[0], rankers[1]) if len(rankers) > 1 else (rankers[0], rankers[0])
    (prefix / "shoprank.conf").write_text(render_nginx(listen, a, b, down))
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""# Written by deploy/cluster.py; the shoprank part is shoprank.conf.
worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/temp/body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;
    include {prefix}/shoprank.conf;
}}
"""
    )
    return conf


def spawn(name: str, command: list[str], logs: Path, env: dict[str, str]) -> Process:
    """A long-running part, in its own session: it outlives `up`, and `down` stops it."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
    return Process(name, child.pid, command, str(log))


def run_job(name: str, command: list[str], logs: Path, env: dict[str, str]) -> float:
    """A one-shot job, to completion; its seconds."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"job-{name}.log"
    started = time.monotonic()
    with log.open("wb") as out:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        raise ClusterError(f"job {name} exited {done.returncode}: {tail[0]} (log: {log})")
    return time.monotonic() - started


def wait_for(ready: Callable[[], bool], what: str, process: Process | None = None) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process is not None and not alive(process.pid):
            raise ClusterError(f"{what} exited while starting (log: {process.log})")
        try:
            if ready():
                return
        except Exception:  # not up yet: refused, loading, electing
            pass
        time.sleep(0.1)
    where = f" (log: {process.log})" if process else ""
    raise ClusterError(f"{what} not ready after {STARTUP_SECONDS:g}s{where}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by us) is not alive.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def redis_ping(port: int) -> bool:
    import redis

    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2) as client:
        return bool(client.ping())


def cluster_ok(ports: Sequence[int]) -> bool:
    import redis

    for port in ports:
        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2) as client:
            if client.cluster("INFO")["cluster_state"] != "ok":
                return False
    return True


def serving(address: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        reply = check(health_pb2.HealthCheckRequest(service="shoprank.v1.Ranker"), timeout=2)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def create_database(name: str) -> None:
    import psycopg

    try:
        with psycopg.connect(f"postgresql://{POSTGRES}/postgres", autocommit=True) as admin:
            found = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if found is None:
                admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as error:
        raise ClusterError(
            f"the registry needs PostgreSQL at {POSTGRES} (trust auth): {error}"
        ) from None


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"postgresql://{POSTGRES}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def check_binaries() -> None:
    missing = [b for b in ("redis-server", "redis-cli", "nginx") if shutil.which(b) is None]
    if missing:
        raise ClusterError(
            f"{', '.join(missing)} not on PATH; on Debian: apt-get install redis-server nginx"
        )


def up(home: Path, database: str, use_free_ports: bool, data_args: list[str]) -> Cluster:
    check_binaries()
    home = home.resolve()
    if (home / "cluster.json").exists():
        running = Cluster.read(home)
        if all(alive(p.pid) for p in running.processes):
            print(f"shoprank cluster already up: nginx {running.nginx}")
            return running
        down(home, drop=False)
    home.mkdir(parents=True, exist_ok=True)
    ports = dict(DEFAULT_PORTS)
    if use_free_ports:
        ports = dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)), strict=True))
    settings = {
        "SHOPRANK_HOME": str(home / "workspace"),
        "SHOPRANK_ONLINE_STORE": "redis_cluster",
        "SHOPRANK_REDIS": ",".join(f"127.0.0.1:{ports[node]}" for node in REDIS_NODES),
        "SHOPRANK_REGISTRY": f"postgresql+psycopg://{POSTGRES}/{database}",
    }
    cluster = Cluster(str(home), database, ports, settings)
    env = {**os.environ, **settings, "PYTHONPATH": str(ROOT)}
    logs = home / "logs"
    try:
        _start_redis(cluster, logs, env)
        create_database(database)
        _run_jobs(cluster, logs, env, data_args)
        _start_rankers(cluster, logs, env)
        _start_nginx(cluster, logs, env)
    except BaseException:
        cluster.save()
        down(home, drop=False)
        raise
    cluster.save()
    return cluster


def _start_redis(cluster: Cluster, logs: Path, env: dict[str, str]) -> None:
    home = Path(cluster.home)
    for node, bus in zip(REDIS_NODES, ("bus_1", "bus_2", "bus_3"), strict=True):
        directory = home / "redis" / node
        shutil.rmtree(directory, ignore_errors=True)  # a new cluster each time: no stale nodes.conf
        directory.mkdir(parents=True)
        command = [
            "redis-server",
            "--port", str(cluster.ports[node]),
            "--bind", "127.0.0.1",
            "--dir", str(directory),
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(cluster.ports[bus]),
            "--cluster-node-timeout", "2000",
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip
        cluster.processes.append(spawn(node, command, logs, env))
    for node in REDIS_NODES:
        port = cluster.ports[node]
        wait_for(functools.partial(redis_ping, port), f"redis {node}", cluster.process(node))
    addresses = [f"127.0.0.1:{cluster.ports[node]}" for node in REDIS_NODES]
    create = ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0"]
    done = subprocess.run([*create, "--cluster-yes"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise ClusterError(f"redis-cli --cluster create failed: {done.stdout[-300:]}{done.stderr}")
    wait_for(lambda: cluster_ok([cluster.ports[n] for n in REDIS_NODES]), "the Redis Cluster")


def _run_jobs(cluster: Cluster, logs: Path, env: dict[str, str], data_args: list[str]) -> None:
    workspace = Path(cluster.env["SHOPRANK_HOME"])
    if (workspace / "models" / "CURRENT").exists():
        jobs = [("apply", ["features", "apply"]), ("materialize", ["features", "materialize"])]
    else:
        jobs = [
            ("data", ["data", "synthetic", *data_args]),
            ("apply", ["features", "apply"]),
            ("backfill", ["features", "backfill"]),
            ("materialize", ["features", "materialize"]),
            ("train", ["train"]),
        ]
    for name, args in jobs:
        seconds = run_job(name, [*SHOPRANK, *args], logs, env)
        print(f"job {name:<12} {seconds:6.1f}s", flush=True)


def ranker_command(cluster: Cluster, ranker: str, metrics: str) -> list[str]:
    return [
        *SHOPRANK,
        "serve",
        "--host", "127.0.0.1",
        "--port", str(cluster.ports[ranker]),
        "--metrics-port", str(cluster.ports[metrics]),
        "--processes", "1",
    ]  # fmt: skip


def start_ranker(cluster: Cluster, ranker: str, logs: Path, env: dict[str, str]) -> Process:
    """One replica, started and SERVING; it replaces any earlier entry of that name."""
    metrics = dict(RANKERS)[ranker]
    process = spawn(ranker, ranker_command(cluster, ranker, metrics), logs, env)
    cluster.processes = [p for p in cluster.processes if p.name != ranker] + [process]
    address = f"127.0.0.1:{cluster.ports[ranker]}"
    wait_for(lambda: serving(address), f"replica {ranker} on {address}", process)
    return process


def _start_rankers(cluster: Cluster, logs: Path, env: dict[str, str]) -> None:
    for ranker, _ in RANKERS:  # one after the other: each start imports Feast, CPU-bound
        start_ranker(cluster, ranker, logs, env)


def _start_nginx(cluster: Cluster, logs: Path, env: dict[str, str]) -> None:
    conf = nginx_main_conf(Path(cluster.home) / "nginx", cluster.nginx, cluster.rankers)
    test = subprocess.run(["nginx", "-t", "-c", str(conf)], capture_output=True, text=True)
    if test.returncode != 0:
        raise ClusterError(f"nginx rejects its configuration: {test.stderr.strip()}")
    command = ["nginx", "-c", str(conf), "-g", "daemon off;"]
    process = spawn("nginx", command, logs, env)
    cluster.processes.append(process)
    wait_for(lambda: serving(cluster.nginx), f"nginx on {cluster.nginx}", process)


# After nginx reloads, its old worker finishes the calls it has in flight, then exits.
RELOAD_SETTLE_SECONDS = 1.0


def set_drained(cluster: Cluster, ranker: str, drained: bool) -> None:
    """Mark a replica down in nginx (or up again), and reload nginx gracefully."""
    address = f"127.0.0.1:{cluster.ports[ranker]}"
    cluster.drained = [a for a in cluster.drained if a != address] + ([address] if drained else [])
    conf = nginx_main_conf(
        Path(cluster.home) / "nginx", cluster.nginx, cluster.rankers, cluster.drained
    )
    done = subprocess.run(
        ["nginx", "-c", str(conf), "-s", "reload"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise ClusterError(f"nginx reload failed: {done.stderr.strip()}")
    cluster.save()
    time.sleep(RELOAD_SETTLE_SECONDS)


def stop_replica(cluster: Cluster, ranker: str) -> None:
    """Take a replica out without failing a call: nginx stops sending it calls first,
    then SIGTERM drains what it still has. A SIGTERM alone, under load, ends the calls
    gRPC had received but not yet started with CANCELLED: grpc.aio's stop() stops
    servicing new calls at once, and nginx's health checks are passive, so it keeps
    sending calls until one fails (docs/deploy.md)."""
    set_drained(cluster, ranker, True)
    stop(cluster.process(ranker))


def restart_replica(cluster: Cluster, ranker: str, env: dict[str, str]) -> None:
    """Start a replica again and, once it is SERVING, give it calls again."""
    start_ranker(cluster, ranker, Path(cluster.home) / "logs", env)
    set_drained(cluster, ranker, False)


def stop(process: Process, seconds: float = 20.0) -> None:
    """SIGTERM (a replica drains), then SIGKILL if it outstays `seconds`."""
    if not alive(process.pid):
        return
    os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    while alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(process.pid):
        os.kill(process.pid, signal.SIGKILL)


def down(home: Path, drop: bool) -> None:
    home = home.resolve()
    state = home / "cluster.json"
    if not state.exists():
        print(f"no cluster at {home}")
        return
    cluster = Cluster.read(home)
    # The balancer first, then the replicas (which drain), then the store.
    order = {"nginx": 0, "ranker_a": 1, "ranker_b": 1}
    for process in sorted(cluster.processes, key=lambda p: order.get(p.name, 2)):
        stop(process)
    shutil.rmtree(home / "redis", ignore_errors=True)
    if drop:
        drop_database(cluster.database)
    state.unlink()
    print(f"shoprank cluster at {home} is down")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "stop-replica", "start-replica"])
    parser.add_argument("replica", nargs="?", choices=[r for r, _ in RANKERS], help="*-replica")
    parser.add_argument("--home", type=Path, default=ROOT / "var" / "cluster")
    parser.add_argument("--database", default="shoprank_cluster", help="the registry's")
    parser.add_argument("--free-ports", action="store_true", help="instead of the fixed ones")
    parser.add_argument("--drop-database", action="store_true", help="down: drop the registry")
    for name in ("--users", "--items", "--days", "--seed"):
        parser.add_argument(name, type=int, help="synthetic data, as `shoprank data`")
    args = parser.parse_args(argv)
    try:
        if args.action == "down":
            down(args.home, args.drop_database)
            return 0
        if args.action.endswith("-replica"):
            if args.replica is None:
                raise ClusterError(
                    f"{args.action} needs a replica: {', '.join(r for r, _ in RANKERS)}"
                )
            running = Cluster.read(args.home.resolve())
            if args.action == "stop-replica":
                stop_replica(running, args.replica)
            else:
                env = {**os.environ, **running.env, "PYTHONPATH": str(ROOT)}
                restart_replica(running, args.replica, env)
            running.save()
            print(f"{args.replica}: {'stopped' if args.action == 'stop-replica' else 'started'}")
            return 0
        data_args = [
            f"--{name}={value}"
            for name in ("users", "items", "days", "seed")
            if (value := getattr(args, name)) is not None
        ]
        cluster = up(args.home, args.database, args.free_ports, data_args)
    except ClusterError as error:
        print(f"deploy.cluster: {error}", file=sys.stderr)
        return 1
    print(
        f"shoprank cluster up: nginx {cluster.nginx} -> replicas {', '.join(cluster.rankers)}\n"
        f"  try: shoprank rank --server {cluster.nginx} --user user_000001 "
        "--candidates item_000001,item_000002\n"
        f"  state: {cluster.home}/cluster.json; stop: make cluster-down"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
