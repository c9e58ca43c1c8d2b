"""Which permanent refusals mean "this mailbox does not exist" (pure)."""

from __future__ import annotations

import pytest

from mailer.mail.smtp_replies import ErrorClass, SmtpFailure, Stage, is_hard_bounce


def failure(code: int, message: str, stage: Stage = Stage.RCPT) -> SmtpFailure:
    return SmtpFailure(ErrorClass.RECIPIENT, stage, code, message)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (550, "5.1.1 <a@b.ru>: Recipient address rejected: User unknown"),
        (550, "5.1.1 Mailbox does not exist"),
        (553, "5.1.2 Bad destination system address"),
        (556, "5.1.10 Recipient address has null MX"),
        (550, "Requested action not taken: mailbox unavailable"),
        (550, "No such user here"),
        (
            550,
            "Message was not accepted -- invalid mailbox.  Local mailbox a@b.ru is unavailable: user not found",
        ),
        (550, "Нет такого пользователя"),
    ],
)
def test_mailbox_does_not_exist(code: int, message: str) -> None:
    assert is_hard_bounce(failure(code, message))


@pytest.mark.parametrize(
    ("code", "message", "stage"),
    [
        (550, "5.7.1 Message rejected as spam", Stage.RCPT),  # policy, not the mailbox
        (554, "5.7.1 Message rejected", Stage.DATA),
        (552, "5.2.2 Mailbox full", Stage.RCPT),
        (553, "5.1.3 Bad destination mailbox address syntax", Stage.RCPT),
        (550, "Relaying denied", Stage.RCPT),  # 550 without the words
        (450, "4.1.1 User unknown (greylisted lookup)", Stage.RCPT),  # not permanent
        (550, "5.1.1 unknown user", Stage.MAIL),  # the sender, not the recipient
    ],
)
def test_other_refusals_are_not(code: int, message: str, stage: Stage) -> None:
    assert not is_hard_bounce(failure(code, message, stage))
