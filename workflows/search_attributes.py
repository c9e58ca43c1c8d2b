"""Search attributes the campaign workflow keeps up to date, for the Web UI and queries."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

MAILER_STATUS = SearchAttributeKey.for_keyword("MailerStatus")
MAILER_DEFER_REASON = SearchAttributeKey.for_keyword("MailerDeferReason")
MAILER_DEFERRED_UNTIL = SearchAttributeKey.for_datetime("MailerDeferredUntil")
MAILER_SENT = SearchAttributeKey.for_int("MailerSent")

ALL_KEYS = (MAILER_STATUS, MAILER_DEFER_REASON, MAILER_DEFERRED_UNTIL, MAILER_SENT)

# The names the Temporal CLI's ``--search-attribute NAME=Type`` flag expects.
CLI_TYPE_NAMES = {
    MAILER_STATUS.name: "Keyword",
    MAILER_DEFER_REASON.name: "Keyword",
    MAILER_DEFERRED_UNTIL.name: "Datetime",
    MAILER_SENT.name: "Int",
}
