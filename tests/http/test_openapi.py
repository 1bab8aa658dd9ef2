"""GET /openapi.json describes every route the app serves, from the app's own route list."""

from proxy.http import openapi
from proxy.http.app import create_app
from tests.conftest import http_client


async def test_every_route_is_described(app_gateway):
    app = create_app(app_gateway.gateway)
    served = openapi.routes(app)
    assert served <= set(openapi.OPERATIONS), sorted(served - set(openapi.OPERATIONS))
    assert set(openapi.OPERATIONS) <= served, sorted(set(openapi.OPERATIONS) - served)  # nothing described twice
    assert ("POST", "/v1/messages") in served and ("DELETE", "/api/keys/{prefix}") in served


async def test_the_document_is_served(app_gateway):
    async with http_client(app_gateway) as http:
        document = (await http.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    keys = document["paths"]["/api/keys/{prefix}"]["delete"]
    assert keys["parameters"] == [{"name": "prefix", "in": "path", "required": True, "schema": {"type": "string"}}]
    assert document["paths"]["/v1/messages"]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "required"] == ["model", "max_tokens", "messages"]
    assert {"apiKey", "bearer", "session"} <= set(document["components"]["securitySchemes"])
    assert all(op["responses"] for ops in document["paths"].values() for op in ops.values())


def test_rules_become_openapi_paths():
    assert openapi.openapi_path("/v1/models/<path:model_id>") == "/v1/models/{model_id}"
    assert openapi.openapi_path("/api/admin/users/<name>/credit") == "/api/admin/users/{name}/credit"
