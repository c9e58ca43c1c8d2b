"""The unsubscribe service's tests: ``mailer web`` (tests/support/webservice.py) and a campaign."""

from __future__ import annotations

import pytest

from mailer.stack import seed_data
from mailer.stack.seed_data import sql_rows


@pytest.fixture
def campaign(database_url: str) -> tuple[str, list[int]]:
    """A campaign of three recipients: its id and the recipients' row ids."""
    user = seed_data.add_user(database_url)
    campaign_id = seed_data.add_campaign(
        database_url, user, ["Anna.K@Example.com", "ivan@example.com", "olga@example.com"]
    )
    ids = [
        int(str(row[0]))
        for row in sql_rows(
            database_url,
            "SELECT id FROM mailer_campaignrecipient WHERE campaign_id = :c ORDER BY id",
            c=campaign_id,
        )
    ]
    return campaign_id, ids
