"""Wiring: load the features and the model, check them, and start the gRPC server."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from features.workspace import Workspace
from server.config import Settings
from server.errors import StartupError
from server.feature_fetch import FeastFeatures
from server.metrics import Metrics
from server.model_runtime import OnnxRanker, check_wiring
from server.pipeline import RankingPipeline, RankQuery
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc
from server.servicer import RankerServicer
from training import registry

log = logging.getLogger(__name__)

RANKER_SERVICE = pb.DESCRIPTOR.services_by_name["Ranker"].full_name


@dataclass
class Running:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    executor: ThreadPoolExecutor
    model_version: str

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        self.executor.shutdown(wait=False, cancel_futures=True)


def load_pipeline(settings: Settings) -> RankingPipeline:
    """Open the feature store and the current model; refuse a mismatched pair."""
    workspace = Workspace(settings.home)
    features = FeastFeatures(workspace.repo_dir)
    features.load()
    version = registry.current_version(workspace.models_dir)
    if version is None:
        log.warning("no model in %s: ranking by similarity x bias", workspace.models_dir)
        return RankingPipeline(features, None, "")
    model = OnnxRanker.load(workspace.models_dir, version, settings.model_threads)
    check_wiring(model.info, features.service_refs(model.info.feature_service))
    return RankingPipeline(features, model, version)


def warm_up(pipeline: RankingPipeline) -> None:
    """One ranking through every stage, then freeze the start-up heap.

    Frozen objects are never scanned again by the cyclic GC, which measured
    here cuts the p99 of the Feast read from about 260 to 90 ms.
    """
    pipeline.rank(RankQuery("__warm_up__", ["__warm_up__"], 0, False))
    gc.collect()
    gc.freeze()


async def create_server(settings: Settings, pipeline: RankingPipeline | None = None) -> Running:
    """Start serving on settings.host:settings.port (0 picks a free port)."""
    pipeline = pipeline or load_pipeline(settings)
    metrics = Metrics()
    executor = ThreadPoolExecutor(settings.workers, thread_name_prefix="rank")
    server = grpc.aio.server()
    pb_grpc.add_RankerServicer_to_server(
        RankerServicer(pipeline, settings, executor, metrics), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            RANKER_SERVICE,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    address = f"{settings.host}:{settings.port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as error:
        raise StartupError(f"cannot listen on {address}: {error}") from None
    await server.start()
    if settings.metrics_port:
        metrics.serve(settings.host, settings.metrics_port)
    for service in ("", RANKER_SERVICE):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return Running(server, port, health_servicer, executor, pipeline.version)


async def serve(settings: Settings, on_ready: Callable[[int], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then drain with a grace period."""
    pipeline = load_pipeline(settings)
    warm_up(pipeline)
    running = await create_server(settings, pipeline)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    log.info("serving on %s:%d, model %s", settings.host, running.port, running.model_version)
    if on_ready:
        on_ready(running.port)
    await stopping.wait()
    print(f"shoprank stopping: draining for up to {settings.grace_seconds:g}s", flush=True)
    await running.stop(settings.grace_seconds)
