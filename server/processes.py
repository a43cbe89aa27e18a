"""Several server processes on one port (SO_REUSEPORT), under one supervisor.

A ranking is CPU-bound Python, so one process uses one core whatever its
threads do; N processes use N cores. gRPC sets SO_REUSEPORT on Linux, so the
kernel spreads connections over the processes. Each process holds its own
item cache: memory grows with N. Children are spawned, not forked, because
gRPC's core does not survive a fork.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection

from server.config import Settings
from server.errors import StartupError

log = logging.getLogger(__name__)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports the kernel has just handed out, all distinct: held open together while
    picking, so the same one cannot come back twice."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _child(settings: Settings, ready: Connection) -> None:
    from server import logs
    from server.app import run

    logs.configure(settings.log_format)
    try:
        run(settings, on_ready=lambda port: ready.send(("ready", port)))
    except Exception as error:
        ready.send(("failed", str(error).strip().splitlines()[0] if str(error) else repr(error)))
        sys.exit(1)


def serve_processes(settings: Settings, on_ready: Callable[[int], None]) -> None:
    """Start settings.processes servers on one port; stop them all on SIGTERM/SIGINT."""
    port = settings.port or free_port(settings.host)
    context = multiprocessing.get_context("spawn")
    children = []
    for i in range(settings.processes):
        metrics = settings.metrics_port + i if settings.metrics_port else 0
        child_settings = replace(
            settings, port=port, processes=1, metrics_port=metrics, stream_worker=False
        )
        parent_end, child_end = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(child_settings, child_end), name=f"rank-{i}")
        process.start()
        children.append((process, parent_end))
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stream = None
    try:
        for _, pipe in children:
            status, detail = pipe.recv() if pipe.poll(600) else ("failed", "start-up timed out")
            if status != "ready":  # every process fails alike: report the first's reason
                raise StartupError(detail)
        if settings.stream_worker:  # here, not in a server process: no shared GIL
            from server.stream_thread import StreamThread

            stream = StreamThread(settings)
            stream.start()
        on_ready(port)
        while not stopping and all(p.is_alive() for p, _ in children):
            time.sleep(0.2)
        if not stopping:
            raise StartupError("a server process died; stopped the others")
    finally:
        if stream is not None:
            stream.stop()
        _stop_all([p for p, _ in children], settings.grace_seconds)


def _stop_all(processes: list[multiprocessing.process.BaseProcess], grace: float) -> None:
    for process in processes:
        if process.is_alive() and process.pid is not None:
            process.terminate()  # SIGTERM: each child drains for its grace period
    deadline = time.monotonic() + grace + 5
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
