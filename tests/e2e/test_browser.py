"""A real browser on the dashboard: Debian's chromium driven by Playwright (its own
browser download is never used). Sign up -> dashboard -> create a key -> copy it ->
redeem a code made with the accounts library -> see the balance change; a request with
the key shows on the dashboard; an admin sees the account. A screenshot of every page
is taken; with CHEAPLM_SCREENSHOTS=1 they are saved under docs/screenshots/ (the
README's pictures), otherwise in the test's temporary directory.

Skipped, saying why, where /usr/bin/chromium or the playwright package is missing
(.ci/run installs chromium). Playwright's sync API runs in a worker thread (it has an
asyncio loop of its own); the gateway keeps serving on the test's trio loop."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import MESSAGE, PASSWORD, code_worth, library

from tests.e2e.browser import CHROMIUM, pytestmark, shots_dir, sync_api  # noqa: F401 (the skip marks)


def walk(url: str, code: str, shots: Path) -> dict[str, str]:
    """The user's and the admin's walk through the pages (blocking: a worker thread)."""
    seen: dict[str, str] = {}
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 860})
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
            context.set_default_timeout(10_000)
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

            def shot(name: str) -> None:
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

            page.goto(url + "/")
            page.fill("#pay", "10")
            seen["calculated"] = page.inner_text("#value")  # the calculator's script, no round trip
            shot("home")
            page.goto(url + "/login")
            shot("login")
            page.click("text=Create an account")
            page.fill("input[name=username]", "robin")
            page.fill("input[name=password]", PASSWORD)
            shot("signup")
            page.click("button[type=submit]")
            page.wait_for_url(url + "/dashboard")
            seen["balance_before"] = page.inner_text("[data-testid=balance]")

            page.click("nav >> text=Keys")
            page.fill("input[name=name]", "laptop")
            page.click("text=Create key")
            key = page.inner_text("[data-testid=new-key]")
            page.click("[data-testid=copy-key]")
            page.wait_for_function("document.querySelector('[data-testid=copy-key]').textContent === 'Copied'")
            seen["key"], seen["clipboard"] = key, page.evaluate("navigator.clipboard.readText()")
            shot("keys")

            page.click("nav >> text=Top up")
            page.fill("input[name=code]", code)
            page.click("text=Redeem")
            seen["notice"] = page.inner_text("[data-testid=notice]")
            seen["balance_after"] = page.inner_text("[data-testid=balance]")
            shot("topup")

            answer = httpx.post(url + "/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                                json={"model": "claude-sonnet-4.5", "max_tokens": 30, "messages": MESSAGE}, timeout=30)
            seen["status"] = str(answer.status_code)
            page.click("nav >> text=Dashboard")
            seen["dashboard"] = page.inner_text("main")
            seen["bars"] = str(page.locator("[data-testid=spend-chart] rect").count())
            shot("dashboard")
            for name in ("usage", "transfer", "settings"):
                page.goto(f"{url}/dashboard/{name}")
                shot(name)
            seen["console_errors"] = "\n".join(errors)  # a CSP refusal or a script error shows here

            admin = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
            admin.goto(url + "/login")
            admin.fill("input[name=username]", "root")
            admin.fill("input[name=password]", PASSWORD)
            admin.click("button[type=submit]")
            admin.wait_for_url(url + "/admin")
            seen["admin"] = admin.inner_text("main")
            admin.screenshot(path=str(shots / "admin.png"), full_page=True)
        finally:
            browser.close()
    return seen


async def test_signup_key_copy_redeem_in_a_real_browser(site, tmp_path):
    code = await code_worth(site, "2")
    await library(site).create_user("root", PASSWORD, role="admin")
    shots = shots_dir(tmp_path)
    with trio.fail_after(60):
        seen = await trio.to_thread.run_sync(walk, site.url, code, shots)
    assert seen["calculated"] == "300.000000"
    assert seen["balance_before"] == "0.000000"
    assert seen["key"].startswith("sk-") and seen["clipboard"] == seen["key"]
    assert "credited $60.000000" in seen["notice"] and seen["balance_after"] == "60.000000"
    assert seen["status"] == "200" and "claude-sonnet-4.5" in seen["dashboard"] and seen["bars"] == "30"
    assert seen["console_errors"] == ""
    assert "robin" in seen["admin"] and "Users" in seen["admin"]
    assert {p.stem for p in shots.glob("*.png")} >= {"home", "login", "signup", "dashboard", "keys", "usage", "topup",
                                                      "transfer", "settings", "admin"}
