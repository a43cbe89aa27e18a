"""GetServingInfo: what this server serves, for operators and deploy checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc

from server.proto.shoprank.v1 import ranking_pb2 as pb


@dataclass(frozen=True)
class InfoServicer:
    describe: Callable[[], pb.ServingInfo]  # assembled where the parts live (server.app)

    async def GetServingInfo(
        self, request: pb.GetServingInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServingInfo:
        return self.describe()
