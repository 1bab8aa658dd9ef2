"""Redirects after login go to this site's paths only (issue 18): no tab, newline or
other control character (browsers drop them and "/\\t/evil.example" becomes
"//evil.example"; in a header they were a 500), no backslash, no "//", no scheme."""

from __future__ import annotations

import pytest

from proxy.http.redirect_target import same_site_path
from tests.conftest import PASSWORD, http_client, library
from tests.http.pages import member

HOSTILE = ["/\t/evil.example", "/\n/evil.example", "/\r\nset-cookie: x=1", "//evil.example", "/\\evil.example",
           "\\\\evil.example", "https://evil.example", "javascript:alert(1)", "/ /evil.example", "/\x00",
           "/\x7f", "/\u2028/evil.example", "/\u00a0", "evil.example", "", "/%0a\x0b", "http:/evil.example"]


@pytest.mark.parametrize("target", HOSTILE)
def test_anything_but_a_same_site_path_is_refused(target):
    assert same_site_path(target) is None


@pytest.mark.parametrize("target", ["/dashboard/keys", "/dashboard/usage?model=claude-haiku-4.5&limit=5",
                                    "/%2F%2Fevil.example", "/a/b#c"])
def test_same_site_paths_are_kept(target):
    assert same_site_path(target) == target


async def test_login_with_a_hostile_next_lands_on_the_dashboard(site):
    async with member(site) as client:
        await client.post("/logout", data={"csrf": "x"})
        for raw in ("/%09/evil.example", "/%0a/evil.example", "/%0d%0aset-cookie:%20x=1", "/%5C/evil.example",
                    "//evil.example", "https:evil.example", "/%E2%80%A8/evil.example"):
            async with http_client(site, headers={"origin": site.url}) as fresh:
                answer = await fresh.post(f"/login?next={raw}", data={"username": "pat", "password": PASSWORD})
            assert answer.status_code == 303, (raw, answer.status_code)
            assert answer.headers["location"] == "/dashboard", raw
