"""create_app: the pieces it assembles, and nothing shared between two apps."""

from proxy.http.api import accounts as accounts_api
from proxy.http.api import payments as payments_api
from proxy.http.api import transfer
from proxy.http import context, error_shapes, identity
from proxy.http.app import create_app
from proxy.relay.exchange import canonical_path
from proxy.relay.routes import RelayRoutes


async def test_the_app_is_the_relay_routes_in_front_of_the_blueprints(gateway):
    app = create_app(gateway.gateway)
    assert isinstance(app.asgi_app, RelayRoutes)
    assert set(app.asgi_app.routes) == {"/v1/messages", "/v1/chat/completions", "/v1/responses",
                                     "/v1/messages/count_tokens"}
    assert set(app.blueprints) == {"public", "models", "transfer", "metrics", "accounts_api", "admin_api",
                                   "payments_api", "openapi", "pages"}
    assert context.gateway_of(app) is gateway.gateway
    assert app.extensions[error_shapes.CLAIMS] == {transfer.PATH: transfer.error_body, **{
        path: error_shapes.anthropic for path in (*accounts_api.CLAIMED, *payments_api.CLAIMED)}}


async def test_two_apps_share_no_state(gateway):
    one, two = create_app(gateway.gateway), create_app(gateway.gateway)
    assert one.extensions[transfer.LIMITER] is not two.extensions[transfer.LIMITER]
    assert one.extensions[error_shapes.CLAIMS] is not two.extensions[error_shapes.CLAIMS]
    assert one.extensions[identity.EXTENSION] is not two.extensions[identity.EXTENSION]
    await one.extensions[transfer.LIMITER].take(1)
    assert two.extensions[transfer.LIMITER].buckets == {}


def test_canonical_paths():
    assert canonical_path("/v1/v1/messages") == "/v1/messages"
    assert canonical_path("/v1/v1/v1/models/x") == "/v1/models/x"
    assert canonical_path("/messages/count_tokens/") == "/v1/messages/count_tokens"
    assert canonical_path("/chat/completions") == "/v1/chat/completions"
    assert canonical_path("/models") == "/v1/models"
    assert canonical_path("/modelsx") == "/modelsx"
    assert canonical_path("/api/user/transfer/") == "/api/user/transfer"
    assert canonical_path("/") == "/" and canonical_path("/v1/v1") == "/v1"


async def test_a_base_url_ending_in_v1_answers_the_clients_reachability_probes(app_gateway):
    """Claude Code probes HEAD <base>/api/hello and other clients HEAD <base>: with the
    base URL the product docs show (…/v1) both were 404."""
    from tests.conftest import http_client
    async with http_client(app_gateway) as http:
        for path in ("/v1", "/v1/", "/v1/api/hello", "/api/hello"):
            answer = await http.head(path)
            assert answer.status_code == 200, path
