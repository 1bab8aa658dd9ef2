"""A fix for two connection leaks in hypercorn 0.18's trio worker, installed by
``install()`` before the gateway serves (proxy/serve.py).

The mechanism. A connection is a ``TCPServer``: one task reads the socket and feeds
h11, the app runs in a task beside it, and a third task, the keep-alive idle timer,
closes the socket after ``keep_alive_timeout`` idle seconds. When the app sends the
last message of a response, hypercorn does the connection's bookkeeping inside that
``send`` call, in the app's task (``H11Protocol._maybe_recycle``): it queues
``http.disconnect`` for the app, then either restarts the idle timer
(``Updated(idle=True)``: a lock and ``nursery.start``) or, when the request's body has
not all arrived (the app answered before reading it: logout, 401/403/404/405), closes
the socket (``Closed``: ``send_eof`` then ``aclose``). Both go through
``TCPServer.protocol_send``. quart-trio reads a request's messages in a task beside
the handler and, on ``http.disconnect``, cancels the nursery both run in: the
disconnect hypercorn queued a moment earlier is delivered at its next checkpoint, so
the rest of the bookkeeping runs cancelled.

1. An early answer: ``send_eof`` raises Cancelled before ``aclose``, the socket stays
   open, the body's late bytes leave h11 paused and the reader waits for a
   ``can_read`` nobody sets: it never reads the client's FIN (CLOSE_WAIT forever, and
   the connection's next request is never answered).
2. Any other answer: the idle timer is never restarted (it stops when a request
   comes), so an idle keep-alive connection is never closed.

A bare ASGI app that doesn't cancel itself on ``http.disconnect`` escapes both (related
upstream: pgjones/hypercorn#106, a trio teardown skipping the socket's shutdown when
cancelled).

The fix: ``TCPServer.protocol_send`` runs shielded. Its slow part, writing to the socket,
already was (hypercorn shields ``send_all``); the rest (closing the socket, restarting
the idle timer) is quick, and now finishes even when the app's task is cancelled under
it.

It replaces the class that ``hypercorn.trio.run.worker_serve`` builds connections from;
the gateway's direct body path (relay/direct_body.py) checks ``isinstance(server,
TCPServer)``, which a subclass satisfies. pyproject pins hypercorn to 0.18, and
tests/http/test_sockets.py is what fails if an upgrade moves what this relies on.
"""

from __future__ import annotations

import trio
from hypercorn.events import Event
from hypercorn.trio import run as hypercorn_run
from hypercorn.trio.tcp_server import TCPServer


class ClosingTCPServer(TCPServer):
    async def protocol_send(self, event: Event) -> None:
        with trio.CancelScope(shield=True):
            await super().protocol_send(event)


def install() -> None:
    """Have hypercorn's trio worker serve connections with ``ClosingTCPServer`` (once;
    later calls change nothing)."""
    if hypercorn_run.TCPServer is TCPServer:
        hypercorn_run.TCPServer = ClosingTCPServer  # type: ignore[misc]
