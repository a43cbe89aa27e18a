"""Shared by the benchmarks: a private redis-server on a free loopback port."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from server.processes import free_port


@contextmanager
def redis_server(*options: str) -> Iterator[str]:
    """A redis-server of its own; options are more of its flags (they win)."""
    port = free_port("127.0.0.1")
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            *options,
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 10
        while (
            subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout
            != b"PONG\n"
        ):
            if time.time() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
