"""GET /openapi.json: every route of the app (the metered /v1 routes, the Quart
blueprints: models, transfer, accounts, admin, payments, probes) as an OpenAPI 3.1
document, built from the app's own route list, so a route cannot be served without
being described (tests/http/test_openapi.py fails when one is missing here)."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any, Mapping

from quart import Blueprint, Response, current_app

from .pages import views as pages
from .responses import json_response

KEY = [{"apiKey": []}, {"bearer": []}]
KEY_OR_SESSION = KEY + [{"session": []}]
NONE: list = []


def _obj(required: tuple[str, ...] = (), **properties: Any) -> dict:
    return {"type": "object", "required": list(required), "properties": properties}


_S, _N, _B, _I = {"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "integer"}
_STRINGS = {"type": "array", "items": _S}
_MESSAGES = _obj(("model", "max_tokens", "messages"), model=_S, max_tokens=_I, stream=_B,
                 messages={"type": "array", "items": {"type": "object"}}, system={}, tools={"type": "array"})
_CHAT = _obj(("model", "messages"), model=_S, messages={"type": "array", "items": {"type": "object"}}, stream=_B,
             max_tokens=_I, max_completion_tokens=_I)
_LIST = [("limit", "integer"), ("before", "string")]

# (method, path) -> (summary, security, request body schema or None, query parameters)
OPERATIONS: Mapping[tuple[str, str], tuple[str, list, dict | None, list[tuple[str, str]]]] = MappingProxyType({
    ("POST", "/v1/messages"): ("Anthropic Messages, streaming or not (metered)", KEY, _MESSAGES, []),
    ("POST", "/v1/messages/count_tokens"): ("Count a request's input tokens (forwarded upstream)", KEY,
                                            _MESSAGES, []),
    ("POST", "/v1/chat/completions"): ("OpenAI Chat Completions, translated to Messages (metered)", KEY, _CHAT, []),
    ("POST", "/v1/responses"): ("OpenAI Responses, translated to Messages (metered, stateless)", KEY,
                                 _obj(("model", "input"), model=_S, input={}, instructions=_S, stream=_B,
                                      tools={"type": "array"}, max_output_tokens=_I), []),
    ("GET", "/v1/models"): ("The models (a key is optional; its restrictions apply)", NONE, None, []),
    ("GET", "/v1/models/{model_id}"): ("One model, by id or alias", NONE, None, []),
    ("GET", "/v1/models/info"): ("Limits, capabilities and the five price lanes per model", NONE, None, []),
    ("GET", "/"): ("Service description (clients probe the base URL)", NONE, None, []),
    ("GET", "/api/hello"): ("Reachability probe", NONE, None, []),
    ("HEAD", "/v1"): ("Reachability probe of a base URL that ends in /v1", NONE, None, []),
    ("HEAD", "/v1/api/hello"): ("Reachability probe under a base URL that ends in /v1", NONE, None, []),
    ("GET", "/health"): ("Status and upstream channels", NONE, None, []),
    ("GET", "/health/ready"): ("Readiness for a load balancer: 503 while the ledger does not answer or the "
                               "process is shutting down", NONE, None, []),
    ("GET", "/metrics"): ("Prometheus metrics (loopback, metrics_networks or the metrics token)", NONE, None, []),
    ("GET", "/openapi.json"): ("This document", NONE, None, []),
    ("POST", "/api/user/transfer"): ("Move balance to another user (the reseller transfer API)", KEY_OR_SESSION,
                                     _obj(("toUsername", "amount"), toUsername=_S, amount=_N), []),
    ("POST", "/api/auth/signup"): ("Create an account; answers with a session cookie", NONE,
                                   _obj(("username", "password"), username=_S, password=_S, email=_S), []),
    ("POST", "/api/auth/login"): ("Log in; answers with a new session cookie", NONE,
                                  _obj(("username", "password"), username=_S, password=_S), []),
    ("POST", "/api/auth/logout"): ("End this session", NONE, None, []),
    ("POST", "/api/auth/password"): ("Change the password (every other session ends)", KEY_OR_SESSION,
                                     _obj(("current_password", "new_password"), current_password=_S,
                                          new_password=_S), []),
    ("GET", "/api/me"): ("The caller's account and balance", KEY_OR_SESSION, None, []),
    ("GET", "/api/keys"): ("The caller's API keys (never the keys themselves)", KEY_OR_SESSION, None, []),
    ("POST", "/api/keys"): ("Create an API key, shown once", KEY_OR_SESSION,
                            _obj((), name=_S, models=_STRINGS, stream=_B, ips=_STRINGS, expires_at=_S), []),
    ("DELETE", "/api/keys/{prefix}"): ("Revoke a key by its 14-character prefix", KEY_OR_SESSION, None, []),
    ("GET", "/api/usage"): ("Usage rows, newest first", KEY_OR_SESSION, None,
                            [*_LIST, ("key", "string"), ("model", "string")]),
    ("GET", "/api/usage.csv"): ("Usage rows as CSV", KEY_OR_SESSION, None,
                                [*_LIST, ("key", "string"), ("model", "string")]),
    ("GET", "/api/ledger"): ("Every balance change (kind, amount, reason, actor), newest first", KEY_OR_SESSION,
                             None, _LIST),
    ("GET", "/api/ledger.csv"): ("Every balance change as CSV", KEY_OR_SESSION, None, _LIST),
    ("POST", "/api/topup/redeem"): ("Redeem a top-up code", KEY_OR_SESSION, _obj(("code",), code=_S), []),
    ("GET", "/api/admin/users"): ("Every account and balance (admin)", KEY_OR_SESSION, None, []),
    ("POST", "/api/admin/users/{name}/credit"): ("Credit (or, negative, correct) an account, with a reason (admin)",
                                                 KEY_OR_SESSION,
                                                 _obj(("amount_usd", "reason"), amount_usd=_N, paid_usd=_N,
                                                      reason=_S), []),
    ("POST", "/api/admin/users/{name}/disable"): ("Disable (or enable) an account (admin)", KEY_OR_SESSION,
                                                  _obj((), disabled=_B), []),
    ("GET", "/api/admin/usage"): ("Everyone's usage rows, newest first (admin)", KEY_OR_SESSION, None,
                                  [*_LIST, ("key", "string"), ("model", "string"), ("user", "string"),
                                   ("since", "string"), ("until", "string")]),
    ("POST", "/api/payments/webhook"): ("A payment provider's signed event (when configured)", [{"signature": []}],
                                        _obj(("id", "username", "paid_usd"), id=_S, username=_S, paid_usd=_S), []),
    ("POST", "/api/payments/{name}/webhook"): ("Provider NAME's signed events (stripe: Stripe-Signature; when "
                                               "configured)", [{"signature": []}], _obj(()), []),
    ("POST", "/api/topup/checkout"): ("Pay by card: a Stripe Checkout Session for $1-$500, answers {url} (when "
                                      "configured)", KEY_OR_SESSION, _obj(("amount_usd",), amount_usd=_N), []),
})

SECURITY_SCHEMES = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "bearer": {"type": "http", "scheme": "bearer"},
    "session": {"type": "apiKey", "in": "cookie", "name": "cheaplm_session"},
    "signature": {"type": "apiKey", "in": "header", "name": "signature"},
}
ERROR = _obj(("type", "error"), type=_S, error=_obj(("type", "message"), type=_S, message=_S), request_id=_S)


def openapi_path(rule: str) -> str:
    """A Quart rule (``/v1/models/<path:model_id>``) as an OpenAPI path (``/v1/models/{model_id}``)."""
    return re.sub(r"<(?:[a-z]+:)?([A-Za-z_]+)>", r"{\1}", rule)


def routes(app) -> set[tuple[str, str]]:
    """Every (method, path) of the API the app serves: the relay's routes and Quart's
    (not the dashboard's HTML pages and static files)."""
    served = {("POST", path) for path in app.asgi_app.routes}
    for rule in app.url_map.iter_rules():
        if pages.is_page(rule.endpoint):
            continue
        methods = rule.methods - {"OPTIONS"}
        for method in methods - {"HEAD"} or methods:  # (a HEAD-only route: the probes)
            served.add((method, openapi_path(rule.rule)))
    return served


def document(app) -> dict:
    paths: dict[str, dict] = {}
    for method, path in sorted(routes(app)):
        summary, security, body, query = OPERATIONS[(method, path)]
        operation: dict[str, Any] = {
            "summary": summary, "security": security,
            "parameters": [{"name": n, "in": "path", "required": True, "schema": _S}
                           for n in re.findall(r"{(\w+)}", path)]
                          + [{"name": n, "in": "query", "schema": {"type": t}} for n, t in query],
            "responses": {"200": {"description": "OK"},
                          "default": {"description": "An error", "content": {
                              "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}
        if body is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        paths.setdefault(path, {})[method.lower()] = operation
    return {"openapi": "3.1.0", "info": {"title": "CheapLM gateway", "version": "0.1.0"}, "paths": paths,
            "components": {"securitySchemes": SECURITY_SCHEMES, "schemas": {"Error": ERROR}}}


def blueprint() -> Blueprint:
    bp = Blueprint("openapi", __name__)
    bp.get("/openapi.json")(serve_document)
    return bp


async def serve_document() -> Response:
    return json_response(document(current_app))
