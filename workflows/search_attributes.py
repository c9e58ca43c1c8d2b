"""Search attributes the campaign workflow keeps up to date, for the Web UI and queries."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

MAILER_STATUS = SearchAttributeKey.for_keyword("MailerStatus")
MAILER_DEFER_REASON = SearchAttributeKey.for_keyword("MailerDeferReason")
MAILER_DEFERRED_UNTIL = SearchAttributeKey.for_datetime("MailerDeferredUntil")
MAILER_SENT = SearchAttributeKey.for_int("MailerSent")
# The CRM user who created the campaign (accounts_user.id), set when the workflow starts:
# `MailerCreatedBy = 12` lists one user's campaigns.
MAILER_CREATED_BY = SearchAttributeKey.for_int("MailerCreatedBy")

ALL_KEYS = (
    MAILER_STATUS,
    MAILER_DEFER_REASON,
    MAILER_DEFERRED_UNTIL,
    MAILER_SENT,
    MAILER_CREATED_BY,
)

# The names the Temporal CLI's ``--search-attribute NAME=Type`` flag expects.
CLI_TYPE_NAMES = {
    MAILER_STATUS.name: "Keyword",
    MAILER_DEFER_REASON.name: "Keyword",
    MAILER_DEFERRED_UNTIL.name: "Datetime",
    MAILER_SENT.name: "Int",
    MAILER_CREATED_BY.name: "Int",
}
