"""create_app(gateway) -> QuartTrio: the relay routes (raw ASGI, the metered hot path)
in front of Quart, which serves the blueprints (probes and health, models, transfer,
the accounts and admin JSON API, the dashboard pages)."""

from __future__ import annotations

from quart import Response, g
from quart_trio import QuartTrio

from ..runtime import Gateway
from ..ids import new_request_id
from .api import accounts as accounts_api
from .api import admin as admin_api
from .pages import site as pages
from .api import payments as payments_api
from .api import transfer
from . import context, error_shapes, metrics, models, openapi, public
from ..relay.drain import StreamDrain
from ..relay.routes import RelayRoutes

# Quart reads a request's body as it arrives, before the route runs: the routes it
# serves take small bodies (the metered routes, with big ones, bypass it).
QUART_MAX_BODY = 64 * 1024
QUART_BODY_TIMEOUT = 10


def create_app(gateway: Gateway, drain: StreamDrain | None = None) -> QuartTrio:
    """``drain``: what a graceful shutdown ends the relay's streams with (relay/drain.py)."""
    app = QuartTrio("cheaplm", static_folder=None)
    app.url_map.merge_slashes = False  # "/v1/models//x" is a 404 in JSON, not an HTML redirect
    app.config["MAX_CONTENT_LENGTH"] = QUART_MAX_BODY
    app.config["BODY_TIMEOUT"] = QUART_BODY_TIMEOUT
    drain = drain if drain is not None else StreamDrain()
    context.attach(app, gateway, drain)
    app.before_request(_new_request_id)
    app.after_request(_add_request_id)
    error_shapes.install(app)
    for blueprint in (public.blueprint(), models.blueprint(), transfer.blueprint(), metrics.blueprint(gateway),
                      accounts_api.blueprint(), admin_api.blueprint(), payments_api.blueprint(), openapi.blueprint(),
                      pages.blueprint()):
        app.register_blueprint(blueprint)
    app.asgi_app = RelayRoutes(app.asgi_app, gateway, drain)  # type: ignore[method-assign]
    return app


async def _new_request_id() -> None:
    g.request_id = new_request_id()


async def _add_request_id(response: Response) -> Response:
    response.headers.setdefault("request-id", g.get("request_id") or new_request_id())
    # No browser reads a JSON error (which may quote the path asked for) as HTML.
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response
