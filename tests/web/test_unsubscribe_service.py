"""The unsubscribe service over real HTTP: RFC 8058 one-click POST, a GET that only asks,
forged tokens refused with nothing changed."""

from __future__ import annotations

import uuid

import httpx

from mailer.mail.unsubscribe_tokens import Target, TargetKind, sign
from mailer.stack.seed_data import sql_execute, sql_rows
from tests.support.webservice import SECRET, WebService

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def token(campaign_id: str, recipient_id: int) -> str:
    return sign(SECRET, Target(TargetKind.RECIPIENT, uuid.UUID(campaign_id), recipient_id))


def suppression(web: WebService) -> list[tuple[object, ...]]:
    return sql_rows(
        web.database_url, "SELECT address, reason, campaign_id::text, note FROM mailer_suppression"
    )


def test_one_click_post_unsubscribes_once_and_get_never_does(
    web: WebService, campaign: tuple[str, list[int]]
) -> None:
    campaign_id, ids = campaign
    url = f"{web.base_url}/u/{token(campaign_id, ids[0])}"

    page = httpx.get(url)
    assert page.status_code == 200
    assert "Отписаться от рассылки" in page.text and 'method="post"' in page.text
    assert "a***@example.com" in page.text and "Anna.K@Example.com" not in page.text
    assert page.headers["cache-control"] == "no-store"
    assert suppression(web) == []  # a link scanner's GET changes nothing

    # As Gmail sends it: form-encoded List-Unsubscribe=One-Click, no cookies, no login.
    done = httpx.post(url, data=ONE_CLICK)
    assert done.status_code == 200 and "Вы отписаны" in done.text
    assert suppression(web) == [
        ("anna.k@example.com", "unsubscribed", campaign_id, "one-click unsubscribe")
    ]
    again = httpx.post(url, data=ONE_CLICK)
    assert again.status_code == 200
    assert len(suppression(web)) == 1
    assert "Вы уже отписаны" in httpx.get(url).text


def test_a_forged_or_broken_token_is_a_400_and_changes_nothing(
    web: WebService, campaign: tuple[str, list[int]]
) -> None:
    campaign_id, ids = campaign
    good = token(campaign_id, ids[1])
    forged = sign(
        "someone-else's-secret", Target(TargetKind.RECIPIENT, uuid.UUID(campaign_id), ids[1])
    )
    for bad in (forged, good[:-3] + "AAA", "not-a-token", good + "x"):
        for method in ("GET", "POST"):
            response = httpx.request(method, f"{web.base_url}/u/{bad}", data=ONE_CLICK)
            assert response.status_code == 400, (bad, method)
            assert "Ссылка недействительна" in response.text
    assert suppression(web) == []
    assert httpx.get(f"{web.base_url}/healthz").text == "ok"


def test_a_test_emails_link_unsubscribes_its_address(
    web: WebService, campaign: tuple[str, list[int]]
) -> None:
    campaign_id, _ = campaign
    user = sql_rows(web.database_url, "SELECT id FROM accounts_user")[0][0]
    sql_execute(
        web.database_url,
        "INSERT INTO mailer_testemail (campaign_id, email, requested_by_id) "
        "VALUES (:c, 'Tester@Example.org', :u)",
        c=campaign_id,
        u=user,
    )
    request_id = sql_rows(web.database_url, "SELECT id FROM mailer_testemail")[0][0]
    link = sign(SECRET, Target(TargetKind.TEST_EMAIL, uuid.UUID(campaign_id), int(str(request_id))))
    assert httpx.post(f"{web.base_url}/u/{link}", data=ONE_CLICK).status_code == 200
    assert [row[:2] for row in suppression(web)] == [("tester@example.org", "unsubscribed")]
