"""A local fake of the parts of Stripe's API the gateway uses, over real HTTP (QuartTrio on
hypercorn, on the test's trio loop), so that the official ``stripe`` library talks to it
exactly as it would to api.stripe.com:

- ``POST /v1/checkout/sessions`` (form-encoded, as the library sends it): checks the
  secret key, answers a ``checkout.session`` object the way Stripe does, and replays the
  first answer for a repeated ``Idempotency-Key`` (recording every key it saw);
- ``GET /pay/ID``: the hosted payment page, with a "Pay" button; ``POST /pay/ID``: pays
  the session, sends the ``checkout.session.completed`` event to the webhook URL signed
  as Stripe signs (``sign``), then redirects to the session's success URL.

``hold``: when set, session creation waits for it (to see that the gateway keeps serving
while the library's call is in flight).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart import Response, redirect, request
from quart_trio import QuartTrio

SECRET_KEY = "sk_test_cheaplm_fake_0123456789"
WEBHOOK_SECRET = "whsec_cheaplm_fake_0123456789abcdef"


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, at: float | None = None) -> str:
    """The ``Stripe-Signature`` header: ``t=TIMESTAMP,v1=HMAC-SHA256(secret, "TIMESTAMP.PAYLOAD")``."""
    stamp = str(int(time.time() if at is None else at))
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + payload, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def event(kind: str, thing: dict, event_id: str | None = None) -> bytes:
    return json.dumps({"id": event_id or f"evt_{hashlib.sha1(repr((kind, thing)).encode()).hexdigest()[:16]}",
                       "object": "event", "api_version": "2025-01-27.acacia", "created": int(time.time()),
                       "type": kind, "livemode": False, "data": {"object": thing}}).encode()


def stripe_error(status: int, message: str, kind: str = "invalid_request_error") -> Response:
    return Response(json.dumps({"error": {"type": kind, "message": message}}), status,
                    content_type="application/json")


@dataclass
class FakeStripe:
    url: str = ""
    webhook_url: str = ""
    sessions: dict[str, dict] = field(default_factory=dict)
    created: list[dict] = field(default_factory=list)               # the form of every creation that made one
    idempotency_keys: list[str | None] = field(default_factory=list)  # of every creation request
    replies: dict[str, dict] = field(default_factory=dict)
    hold: trio.Event | None = None
    in_flight: trio.Event = field(default_factory=trio.Event)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def app(self) -> QuartTrio:
        app = QuartTrio("fake_stripe")
        app.add_url_rule("/v1/checkout/sessions", view_func=self.create, methods=["POST"])
        app.add_url_rule("/pay/<session_id>", view_func=self.pay_page, methods=["GET"])
        app.add_url_rule("/pay/<session_id>", view_func=self.pay, methods=["POST"])
        return app

    async def create(self) -> Response:
        if request.headers.get("authorization") != f"Bearer {SECRET_KEY}":
            return stripe_error(401, "Invalid API Key provided", "invalid_request_error")
        key = request.headers.get("idempotency-key")
        self.idempotency_keys.append(key)
        self.in_flight.set()
        if self.hold is not None:
            await self.hold.wait()
        if key in self.replies:
            return Response(json.dumps(self.replies[key]), 200, content_type="application/json",
                            headers={"idempotent-replayed": "true"})
        form = (await request.form).to_dict()
        if form.get("mode") != "payment" or "line_items[0][price_data][unit_amount]" not in form:
            return stripe_error(400, "Missing required param: line_items.")
        number = next(self.ids)
        session_id = f"cs_test_{number:04d}"
        cents = int(form["line_items[0][price_data][unit_amount]"]) * int(form.get("line_items[0][quantity]", 1))
        session = {"id": session_id, "object": "checkout.session", "mode": "payment", "status": "open",
                   "payment_status": "unpaid", "amount_total": cents, "amount_subtotal": cents,
                   "currency": form["line_items[0][price_data][currency]"],
                   "client_reference_id": form.get("client_reference_id"),
                   "metadata": {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")},
                   "success_url": form["success_url"], "cancel_url": form["cancel_url"],
                   "payment_intent": None, "url": f"{self.url}/pay/{session_id}", "livemode": False}
        self.sessions[session_id] = session
        self.created.append(form)
        if key is not None:
            self.replies[key] = session
        return Response(json.dumps(session), 200, content_type="application/json")

    async def pay_page(self, session_id: str) -> Response:
        session = self.sessions[session_id]
        html = (f"<!doctype html><title>Fake Stripe Checkout</title><h1>Pay ${session['amount_total'] / 100:.2f}</h1>"
                f"<form method=post><button id=pay type=submit>Pay</button></form>")
        return Response(html, content_type="text/html")

    def paid(self, session_id: str) -> dict:
        """The session, paid (as Stripe completes it)."""
        session = self.sessions[session_id]
        session.update(status="complete", payment_status="paid", payment_intent=f"pi_{session_id}", url=None)
        return session

    async def pay(self, session_id: str) -> Response:
        body = event("checkout.session.completed", self.paid(session_id))
        async with httpx.AsyncClient(timeout=10) as http:
            sent = await http.post(self.webhook_url, content=body,
                                   headers={"stripe-signature": sign(body), "content-type": "application/json"})
        if sent.status_code != 200:
            return Response(f"the webhook answered {sent.status_code}: {sent.text}", 502)
        return redirect(self.sessions[session_id]["success_url"], 303)


async def serve_fake(fake: FakeStripe, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, fake.app(), config)
        fake.url = binds[0]
        task_status.started(fake)
