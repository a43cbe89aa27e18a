"""Locust against shoprank's Rank, through a gRPC user.

    locust -f bench/locustfile.py --host 127.0.0.1:50051 --shoprank-home var
        (the web UI on http://127.0.0.1:8089)
    locust -f bench/locustfile.py --host 127.0.0.1:50051 --shoprank-home var \\
        --headless -u 16 -r 4 -t 60s --csv out/locust

Calls come from the same scenario files as `shoprank loadtest` (--shoprank-scenario),
drawn from the workspace's users and items. Each call is timed to its last page
and reported as `Rank/<kind>` (rank, retrieval, search, invalid): a scenario's
invalid calls show as that row's failures, by design. Locust runs users on
gevent, so gRPC is switched to gevent before any channel exists.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()  # before any gRPC object: calls then yield to other users

from locust import User, constant, events, task  # noqa: E402

from features.workspace import Workspace  # noqa: E402
from server.clients.channels import Access  # noqa: E402
from server.clients.loadtest import scenario  # noqa: E402
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc  # noqa: E402

POOL: list[scenario.Shot] = []
PLAN: list[scenario.Scenario] = []


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--shoprank-home", default="var", help="workspace to draw users from")
    parser.add_argument("--shoprank-scenario", default="", help="a `shoprank loadtest` scenario")


@events.test_start.add_listener
def _build_pool(environment: Any, **_: Any) -> None:
    """Built once per Locust process, before any user starts; each process
    (a worker, with --processes) draws its own stream of the scenario."""
    options = environment.parsed_options
    path = options.shoprank_scenario
    plan = scenario.load(Path(path)) if path else scenario.Scenario()
    workspace = Workspace(Path(options.shoprank_home))
    population = scenario.read_population(workspace.events_path, workspace.catalog_path)
    POOL[:] = scenario.build_pool(plan, population, stream=os.getpid())
    PLAN[:] = [plan]


_next = itertools.count()


class RankUser(User):
    """One caller in a closed loop: the next call as soon as the last one ends."""

    wait_time = constant(0)

    def on_start(self) -> None:
        plan = PLAN[0]
        access = Access(plan.tls, plan.token(dict(os.environ)))
        self._channel = access.channel(self.host)
        self._stub = pb_grpc.RankerStub(self._channel)
        self._metadata = access.metadata or None

    def on_stop(self) -> None:
        self._channel.close()

    @task
    def rank(self) -> None:
        shot = POOL[next(_next) % len(POOL)]
        started = time.perf_counter()
        length = 0
        error: Exception | None = None
        try:
            call = self._stub.Rank(shot.request, timeout=shot.deadline_s, metadata=self._metadata)
            for page in call:
                length += page.ByteSize()
        except grpc.RpcError as failed:
            error = failed
        events.request.fire(
            request_type="grpc",
            name=f"Rank/{shot.kind}",
            response_time=(time.perf_counter() - started) * 1e3,
            response_length=length,
            exception=error,
            context={},
        )
