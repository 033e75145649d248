"""Logging for `makima-tts serve`: every line (ours and uvicorn's) carries the replica id
(`replica=<TTS_REPLICA_ID>`), so the logs of many replicas can be merged and still told apart; and no
`?token=` ever reaches a log line (`RedactTokens`)."""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from uvicorn.config import LOGGING_CONFIG


class RedactTokens(logging.Filter):
    """uvicorn logs request paths with their query: never let a `?token=` reach the log."""

    _token = re.compile(r"(token=)[^&\s\"']*", re.IGNORECASE)

    def _clean(self, value):
        return self._token.sub(r"\1[redacted]", value) if isinstance(value, str) else value

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._clean(a) for a in record.args)
        return True


def _tag(replica_id: str) -> str:
    return "replica=" + replica_id.replace("%", "%%")


def log_config(replica_id: str) -> dict[str, Any]:
    """uvicorn's logging configuration (its own loggers only) with the replica in every format."""
    tag = _tag(replica_id)
    config = copy.deepcopy(LOGGING_CONFIG)
    formatters = config["formatters"]
    formatters["default"]["fmt"] = f"%(asctime)s %(levelprefix)s {tag} %(name)s: %(message)s"
    formatters["access"]["fmt"] = f'%(asctime)s %(levelprefix)s {tag} %(client_addr)s - "%(request_line)s" %(status_code)s'
    return config


def configure_process_logging(replica_id: str, level: str) -> None:
    """`makima-tts serve` only (tests keep their own root logger): our modules' lines, with the replica."""
    logging.basicConfig(level=level.upper(), format=f"%(asctime)s %(levelname)s {_tag(replica_id)} %(name)s: %(message)s")


def redact_uvicorn_logs() -> None:
    for name in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
