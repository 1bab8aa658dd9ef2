"""Behind a TLS proxy (issue 18): with ``trusted_proxies``, X-Forwarded-Host and
X-Forwarded-Proto count for the same-site check, so the dashboard's forms work when
the proxy rewrites Host (nginx's default) or says nothing of the scheme; from anyone
else those headers count for nothing."""

from __future__ import annotations

from dataclasses import replace

from proxy.config import AccountsConfig
from proxy.serve import serve
from tests.conftest import FAST_HASH, PASSWORD, http_client
from tests.http.pages import HTML, csrf_of

PUBLIC = "gateway.example"


async def behind(nursery, config):
    return await nursery.start(serve, replace(config, trusted_proxies=("127.0.0.0/8",),
                                              accounts=AccountsConfig(**FAST_HASH)))


async def signup_and_change_password(running, headers: dict) -> list[int]:
    """A browser's way through the dashboard: sign up, then a logged-in form (the
    settings page's password change): their statuses."""
    async with http_client(running, headers={**HTML, **headers}) as browser:
        signup = await browser.post("/signup", data={"username": "pat", "password": PASSWORD})
        if signup.status_code != 303:
            return [signup.status_code]
        browser.cookies.set("cheaplm_session", signup.cookies["cheaplm_session"])
        token = csrf_of((await browser.get("/dashboard/settings")).text)
        changed = await browser.post("/dashboard/settings",
                                     data={"csrf": token, "password": PASSWORD, "new_password": "another one!"})
        return [signup.status_code, changed.status_code]


async def test_forwarded_host_and_proto_make_the_forms_work(nursery, config):
    running = await behind(nursery, config)
    proxied = {"x-forwarded-host": PUBLIC, "x-forwarded-proto": "https", "origin": f"https://{PUBLIC}",
               "sec-fetch-site": "same-origin"}
    assert await signup_and_change_password(running, proxied) == [303, 303]


async def test_a_proxy_that_does_not_say_the_scheme(nursery, config):
    running = await behind(nursery, config)
    proxied = {"x-forwarded-host": PUBLIC, "origin": f"https://{PUBLIC}"}
    assert await signup_and_change_password(running, proxied) == [303, 303]


async def test_another_site_is_still_refused_behind_the_proxy(nursery, config):
    running = await behind(nursery, config)
    for origin in ("https://evil.example", f"https://{PUBLIC}.evil.example", "null"):
        evil = {"x-forwarded-host": PUBLIC, "x-forwarded-proto": "https", "origin": origin}
        assert await signup_and_change_password(running, evil) == [403], origin
    # The scheme the proxy states is the one that counts.
    plain = {"x-forwarded-host": PUBLIC, "x-forwarded-proto": "http", "origin": f"https://{PUBLIC}"}
    assert await signup_and_change_password(running, plain) == [403]


async def test_forwarded_headers_from_an_untrusted_peer_count_for_nothing(site):
    spoofed = {"x-forwarded-host": PUBLIC, "x-forwarded-proto": "https", "origin": f"https://{PUBLIC}"}
    assert await signup_and_change_password(site, spoofed) == [403]
    assert await signup_and_change_password(site, {"origin": site.url}) == [303, 303]


async def test_a_proxy_that_adds_its_own_forwarded_for_line_is_the_one_believed(nursery, config):
    """A proxy may add its X-Forwarded-For as a header line of its own after the client's
    (HAProxy's ``option forwardfor``): the lines are one list, in order (RFC 9110), so the
    client's own line cannot name another address for the per-address limits."""
    running = await nursery.start(serve, replace(config, trusted_proxies=("127.0.0.0/8",),
                                                 accounts=AccountsConfig(**FAST_HASH, signups_per_hour=1)))
    statuses = []
    async with http_client(running) as http:
        for n, spoofed in enumerate(("203.0.113.1", "203.0.113.2")):
            headers = [("x-forwarded-for", spoofed), ("x-forwarded-for", "198.51.100.7")]
            response = await http.post("/api/auth/signup", json={"username": f"u{n}", "password": PASSWORD},
                                       headers=headers)
            statuses.append(response.status_code)
    assert statuses == [201, 429]
