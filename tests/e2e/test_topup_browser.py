"""Paying by card in a real browser (Debian's chromium via Playwright, as test_browser.py):
sign up -> the top-up page -> pick $10 on the slider and field (the page's "you get" as the
server renders it) -> Pay by card -> the payment page of a local fake of Stripe (the
gateway's official library made the Checkout Session there) -> Pay -> the fake sends the
signed webhook -> back on the top-up page, the balance shows the credit. A screenshot of
the top-up card: saved as docs/screenshots/topup-card.png with CHEAPLM_SCREENSHOTS=1.

Skipped, saying why, without /usr/bin/chromium or the playwright package."""

from __future__ import annotations

import trio

from tests.e2e.browser import CHROMIUM, pytestmark, shots_dir, sync_api  # noqa: F401 (the skip marks)
from tests.conftest import PASSWORD
from tests.payments.card_site import BONUS, fake, start_card_site  # noqa: F401 (the fixture)


def walk(url: str, fake_url: str, shots) -> dict[str, str]:
    seen: dict[str, str] = {}
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
            page.set_default_timeout(10_000)
            errors: list[str] = []
            page.on("console", lambda m: errors.append(f"{m.text} ({m.location.get('url')})")  # (not the fake's
                    if m.type == "error" and not m.location.get("url", "").startswith(fake_url) else None)  # favicon)
            page.goto(url + "/signup")
            page.fill("input[name=username]", "quinn")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(url + "/dashboard")
            page.click("nav >> text=Top up")
            seen["default"] = page.inner_text("#you-get")
            page.fill("#amount-slider", "250")                   # the slider moves the field
            seen["slider"] = page.input_value("#amount") + " -> " + page.inner_text("#you-get")
            page.fill("#amount", "10")
            seen["field"] = page.inner_text("#you-get") + " / slider " + page.input_value("#amount-slider")
            page.locator("#topup").screenshot(path=str(shots / "topup-card.png"))
            page.click("[data-testid=pay]")
            page.wait_for_url(fake_url + "/pay/*")
            seen["at_stripe"] = page.url
            page.click("#pay")
            page.wait_for_url(url + "/dashboard/topup?checkout=success")
            seen["notice"] = page.inner_text("[data-testid=notice]")
            seen["balance"] = page.inner_text("[data-testid=balance]")
            page.screenshot(path=str(shots / "topup-paid.png"), full_page=True)
            seen["console_errors"] = "\n".join(errors)
        finally:
            browser.close()
    return seen


async def test_top_up_by_card_in_a_real_browser(nursery, config, fake, tmp_path):
    running = await start_card_site(nursery, config, fake, BONUS)
    shots = shots_dir(tmp_path)
    with trio.fail_after(60):
        seen = await trio.to_thread.run_sync(walk, running.url, fake.url, shots)
    assert seen["default"] == "605.000000"                       # the server's figure for $20
    assert seen["slider"] == "250 -> 7600.000000"                # $7500 + the $100 step
    assert seen["field"] == "305.000000 / slider 10"
    assert seen["at_stripe"] == f"{fake.url}/pay/cs_test_0001"
    assert "Payment received" in seen["notice"] and seen["balance"] == "305.000000"
    assert seen["console_errors"] == ""
    assert fake.created[0]["line_items[0][price_data][unit_amount]"] == "1000"
    assert (await running.gateway.store.get_account("quinn")).balance == 305_000_000
    assert (shots / "topup-card.png").stat().st_size > 5_000
