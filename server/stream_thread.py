"""The stream worker on a thread beside serving (`serve --stream-worker`).

The embedded default's way to see real-time features with one command. With
several server processes it runs in their supervisor, so no server process
shares its GIL with it; `shoprank features stream` runs it on its own.
"""

from __future__ import annotations

import logging
import threading

from features.event_log import open_event_log
from features.stream_worker import StreamConfig, StreamWorker
from server.config import Settings

log = logging.getLogger(__name__)


class StreamThread:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.worker: StreamWorker | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stream-worker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        workspace = self._settings.workspace
        dedup = self._settings.event_dedup_seconds
        worker = StreamWorker(
            workspace, open_event_log(workspace, dedup), StreamConfig(dedup_seconds=dedup)
        )
        try:
            worker.load()
        except Exception as error:  # serving goes on; LogEvents still logs durably
            log.error("the stream worker did not start: %s", error)
            return
        self.worker = worker
        log.info("stream worker running on snapshot %s", worker.snapshot and worker.snapshot.at)
        try:
            worker.run(self._stop)
        finally:
            worker.close()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
