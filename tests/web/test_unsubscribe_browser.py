"""The unsubscribe page in a real browser: Debian's Chromium, headless, driven by Playwright
(its own browser download is never used: nothing is fetched at run time)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from mailer.mail.unsubscribe_tokens import Target, TargetKind, sign
from mailer.stack.seed_data import sql_rows
from tests.support.webservice import SECRET, WebService

# Without these, Chromium reaches for Google's services, which this network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        # CI installs Debian's `chromium` (.ci/run): there the test must run, not skip.
        if os.environ.get("CI"):
            pytest.fail("chromium not found: install the Debian package `chromium`")
        pytest.skip("chromium not installed (Debian package `chromium`)")
    return found


async def test_the_page_confirms_with_one_button(
    web: WebService, campaign: tuple[str, list[int]], tmp_path: Path
) -> None:
    executable = chromium()
    campaign_id, ids = campaign
    link = sign(SECRET, Target(TargetKind.RECIPIENT, uuid.UUID(campaign_id), ids[2]))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page(locale="ru-RU")
            response = await page.goto(f"{web.base_url}/u/{link}")
            assert response is not None and response.status == 200
            assert await page.title() == "Отписаться от рассылки"
            assert "o***@example.com" in await page.inner_text("body")
            assert sql_rows(web.database_url, "SELECT count(*) FROM mailer_suppression") == [(0,)]
            await page.screenshot(path=str(tmp_path / "confirm.png"))

            await page.click("#unsubscribe")
            await page.wait_for_selector("#done")
            assert await page.title() == "Вы отписаны"
            await page.screenshot(path=str(tmp_path / "done.png"))

            await page.goto(f"{web.base_url}/u/{link}")
            assert await page.title() == "Вы уже отписаны"
            broken = await page.goto(f"{web.base_url}/u/{link[:-4]}")
            assert broken is not None and broken.status == 400
            assert await page.title() == "Ссылка недействительна"
        finally:
            await browser.close()
    assert sql_rows(web.database_url, "SELECT address, reason FROM mailer_suppression") == [
        ("olga@example.com", "unsubscribed")
    ]
