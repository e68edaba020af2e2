"""Running the web app under uvicorn with limits on slow and idle clients, and an access log
that never shows job ids.

uvicorn's own ``timeout_keep_alive`` only starts once a response has been sent: a client that
connects and sends nothing, or half a request header, holds its connection for as long as it
likes (uvicorn issue #157 lists the missing request-start timeout). ``TimedH11Protocol`` is
uvicorn's h11 protocol with that deadline added: the request line and headers must be complete
within ``header_timeout`` seconds of the connection opening (or of the first byte of the next
request on a kept-alive one), or the connection is closed. The body is timed in the app
(genreshift.web.app's guard), where the time spent waiting for the client can be told apart
from the time the app takes to read. ``limit_concurrency`` is uvicorn's: past it, requests get
503 at once instead of waiting.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

import h11
import uvicorn
from uvicorn.logging import DefaultFormatter
from uvicorn.protocols.http.h11_impl import H11Protocol

from genreshift.web.jobs import log_tag

log = logging.getLogger("genreshift.web")

JOB_PATH = re.compile(r"/api/jobs/([A-Za-z0-9_-]{32})")


@dataclass(frozen=True)
class ServerLimits:
    """Connection limits, chosen and measured in docs/WEB.md ("Slow clients")."""

    header_timeout: float = 10.0  # s for the request line and headers
    keep_alive: int = 5  # s an idle kept-alive connection stays open (uvicorn's default)
    limit_concurrency: int = 100  # open connections before new requests get 503


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request header does not arrive in
    time. Subclassed per server (``protocol_with``) to carry its timeout."""

    header_timeout: float = ServerLimits.header_timeout

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request on a kept-alive connection starts here
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # the header is complete (or the connection failed)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_late)

    def _disarm(self) -> None:
        if getattr(self, "_header_timer", None) is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_late(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            client = f"{self.client[0]}:{self.client[1]} " if self.client else ""
            log.info("%sclosed: no complete request header within %g s", client,
                     self.header_timeout)
            self.transport.close()


def protocol_with(header_timeout: float) -> type[TimedH11Protocol]:
    return type("TimedH11Protocol", (TimedH11Protocol,), {"header_timeout": header_timeout})


class HideJobIds(logging.Filter):
    """Rewrites /api/jobs/<id> in uvicorn's access log records to /api/jobs/job~<digest>: the
    log can follow a job, but whoever reads it cannot open one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(JOB_PATH.sub(lambda m: f"/api/jobs/{log_tag(m.group(1))}", a)
                                if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = JOB_PATH.sub(lambda m: f"/api/jobs/{log_tag(m.group(1))}", record.msg)
        return True


def server_config(app, *, host: str, port: int, limits: ServerLimits = ServerLimits(),
                  log_level: str = "info") -> uvicorn.Config:
    """A uvicorn configuration for ``app`` with ``limits``; the access log hides job ids."""
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            http=protocol_with(limits.header_timeout),
                            timeout_keep_alive=limits.keep_alive,
                            limit_concurrency=limits.limit_concurrency)
    # uvicorn.Config has configured logging by now; the filter goes on its access logger,
    # and the app's own lines (genreshift.web) are printed as uvicorn prints its.
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, HideJobIds) for f in access.filters):
        access.addFilter(HideJobIds())
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    return config


def serve(app, *, host: str, port: int, limits: ServerLimits = ServerLimits(),
          log_level: str = "info") -> None:
    """Run ``app`` until interrupted."""
    uvicorn.Server(server_config(app, host=host, port=port, limits=limits,
                                 log_level=log_level)).run()
