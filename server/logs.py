"""The server's logging: text for people, or one JSON object a line for a log
pipeline (`--log-format json`), with a line per Rank call."""

from __future__ import annotations

import json
import logging
from typing import Any

TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# The logger of the per-call lines; in text mode it stays quiet.
REQUESTS = "shoprank.requests"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(log_format: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    # Feast logs each registry refresh at INFO; only its warnings concern an operator.
    logging.getLogger("feast").setLevel(logging.WARNING)
    logging.getLogger(REQUESTS).setLevel(logging.INFO if log_format == "json" else logging.WARNING)


def request_line(fields: dict[str, Any]) -> None:
    """One Rank call's line; `fields` become the JSON object's keys."""
    logging.getLogger(REQUESTS).info("rank", extra={"fields": fields})
