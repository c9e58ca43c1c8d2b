"""The Temporal Web UI in a real browser (Debian's Chromium through Playwright), on the dev
server's own UI: a campaign deferred outside working hours reads as the operator's campaign
— its name in the summary, the deferral on the timer — and the list filtered by
``MailerDeferReason`` finds it. Screenshots go to ``MAILER_UI_SCREENSHOTS`` when set (that
is how docs/images/ was made), else to the test's temporary directory."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, async_playwright
from temporalio.testing import WorkflowEnvironment

from mailer.core.ui_links import campaigns_query, list_link, workflow_link
from mailer.operations import control
from mailer.stack import seed_data
from mailer.stack.binaries import temporal_binary
from mailer.stack.servers import free_port
from mailer.stack.smtp_sink import SmtpSink
from mailer.stack.smtpbz_stub import SmtpBzStubServer
from tests.support.harness import SERVER_STARTUP, on_the_dev_server, wait_for, zone
from tests.web.test_unsubscribe_browser import CHROMIUM_ARGS, chromium
from workflows.campaign import workflow_id_for
from workflows.search_attributes import ALL_KEYS
from workflows.states import Signal
from workflows.transitions import PAUSED_BY_OPERATOR

NAME = "Декабрьская рассылка"
SHOWN_WITHIN_SECONDS = 30


@pytest.fixture(scope="module")
async def ui_env() -> AsyncIterator[tuple[WorkflowEnvironment, str]]:
    """A dev server with its Web UI (the session's dev server runs without one)."""
    port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=ALL_KEYS,
        ui=True,
        ui_port=port,
        dev_server_startup_timeout=SERVER_STARTUP,
    )
    yield env, f"http://127.0.0.1:{port}"
    await env.shutdown()


def closed_window(now: datetime) -> tuple[int, int]:
    """An hour-long window that opens two hours from now: sending is closed whatever the
    hour the test runs at."""
    start = (now.astimezone(zone()).hour + 2) % 24
    return start, start + 1


def screenshots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("MAILER_UI_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


async def page_text(page: Page) -> str:
    """The text of the page and of its frames (the UI renders markdown in sandboxed
    iframes)."""
    parts = []
    for frame in page.frames:
        with contextlib.suppress(PlaywrightError):
            parts.append(await frame.inner_text("body"))
    return "\n".join(parts)


async def shows(page: Page, text: str) -> None:
    async def present() -> bool:
        return text in await page_text(page)

    await wait_for(present, timeout=SHOWN_WITHIN_SECONDS, interval=0.5, what=repr(text))


async def test_a_deferred_campaign_reads_as_the_operators_campaign_in_the_web_ui(
    ui_env: tuple[WorkflowEnvironment, str],
    database_url: str,
    redis_url: str,
    sink: SmtpSink,
    stub: SmtpBzStubServer,
    tmp_path: Path,
) -> None:
    executable = chromium()
    env, ui_url = ui_env
    harness = on_the_dev_server(env.client, database_url, redis_url, sink, stub)
    start, end = closed_window(datetime.now(zone()))
    settings = harness.settings.model_copy(
        update={
            "working_hours_start": start,
            "working_hours_end": end,
            "temporal_address": env.client.service_client.config.target_host,
            "task_queue": harness.task_queue,
        }
    )
    user = seed_data.add_user(database_url)
    seed_data.set_account(database_url, smtp_port=sink.port)
    seed_data.set_quota(database_url, 1_000_000)
    campaign = seed_data.add_campaign(database_url, user, 12, name=NAME)
    workflow_id = workflow_id_for(campaign)
    async with harness.worker(working_hours_start=start, working_hours_end=end):
        await control.start(settings, uuid.UUID(campaign))
        await wait_for(
            lambda: harness.queue_row(campaign).get("defer_reason") == "outside_hours",
            timeout=30,
            what="the campaign deferred outside working hours",
        )
        out = screenshots(tmp_path)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=executable, headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                await page.goto(workflow_link(ui_url, "default", workflow_id))
                # The timeline: the durable sleep says what it waits for and until when; the
                # start what it did; the deferral's record, a local activity, by its type
                # (the SDK does not carry a local activity's summary into its marker).
                await shows(page, "outside_hours until")
                await shows(page, "start: claim the campaign")
                await shows(page, "record_state")
                await page.screenshot(path=str(out / "ui-campaign.png"), full_page=True)
                # Summary and details: the campaign's name, size and creator; its limits.
                await page.get_by_role("tab", name="User Metadata").click()
                await shows(page, f"{NAME} · 12 recipients")
                await shows(page, f"mailer status {campaign}")
                await shows(page, "Deferred: outside_hours until")
                body = await page_text(page)
                assert "No summary available" not in body and "No details available" not in body
                await page.screenshot(path=str(out / "ui-metadata.png"), full_page=True)

                query = campaigns_query("outside_hours")
                await page.goto(list_link(ui_url, "default", query))
                await shows(page, workflow_id)
                await page.screenshot(path=str(out / "ui-list.png"), full_page=True)

                # A pause has no timer to carry its reason: its record is an activity whose
                # summary says why.
                await control.signal(settings, uuid.UUID(campaign), Signal.PAUSE)
                await page.goto(workflow_link(ui_url, "default", workflow_id))
                await shows(page, f"record paused: {PAUSED_BY_OPERATOR}")
            finally:
                await browser.close()
