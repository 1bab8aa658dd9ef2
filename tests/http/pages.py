"""The dashboard as a browser sees it: HTML preferred, a cookie jar, form posts with the
page's CSRF token, a member signed up through the page."""

from __future__ import annotations

import re
from contextlib import asynccontextmanager
from typing import AsyncIterator

import httpx

from tests.conftest import PASSWORD, http_client

HTML = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}

def web(running) -> httpx.AsyncClient:
    """A browser: a cookie jar, HTML preferred, its posts from the site itself."""
    return http_client(running, timeout=30, headers={**HTML, "origin": running.url})


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


async def post(client: httpx.AsyncClient, path: str, fields: dict, token_from: str = "/dashboard") -> httpx.Response:
    """A logged-in form post with the CSRF token of the page ``token_from``."""
    token = csrf_of((await client.get(token_from)).text)
    return await client.post(path, data={"csrf": token, **fields})


@asynccontextmanager
async def member(running, username: str = "pat") -> AsyncIterator[httpx.AsyncClient]:
    async with web(running) as client:
        response = await client.post("/signup", data={"username": username, "password": PASSWORD})
        assert response.status_code == 303 and response.headers["location"] == "/dashboard", response.text
        yield client
