"""Mail as it comes back, in the shapes real servers send it (a Postfix bounce, an ARF
complaint as mail.ru's and Yahoo's feedback loops send them, a mail client's unsubscribe)."""

from __future__ import annotations

POSTFIX_BOUNCE = """\
Return-Path: <>
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: news@example.com
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="8C1F3401A2.1764331200/mx.example.net"
Message-Id: <20261128120000.8C1F3401A2@mx.example.net>

This is a MIME-encapsulated message.

--8C1F3401A2.1764331200/mx.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

<{recipient}>: host mx.example.org[192.0.2.1] said: {reply}
    (in reply to RCPT TO command)

--8C1F3401A2.1764331200/mx.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: 8C1F3401A2
X-Postfix-Sender: rfc822; news@example.com
Arrival-Date: Sat, 28 Nov 2026 12:00:00 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; {reply_folded}

--8C1F3401A2.1764331200/mx.example.net
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <news@example.com>
Received: from worker (localhost [127.0.0.1])
\tby mx.example.net (Postfix) with ESMTP id 8C1F3401A2
\tfor <{recipient}>; Sat, 28 Nov 2026 12:00:00 +0000 (UTC)
From: Demo CRM <news@example.com>
To: {recipient}
Subject: =?utf-8?b?0J3QvtCy0YvQtSDRgtCw0YDQuNGE0Ys=?=
Message-ID: <c0ffee.1@mailer>
List-Unsubscribe: {list_unsubscribe}
List-Unsubscribe-Post: List-Unsubscribe=One-Click
MIME-Version: 1.0

--8C1F3401A2.1764331200/mx.example.net--
"""

ARF_COMPLAINT = """\
From: {sender}
To: fbl@example.com
Subject: FW: Новые тарифы
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
\tboundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.2 on Sat, 28 Nov 2026 12:00:00 +0300.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: Mail.Ru-FBL/1.0
Version: 1
Original-Mail-From: <news@example.com>
Arrival-Date: Sat, 28 Nov 2026 12:00:00 +0300
Source-IP: 192.0.2.2
Reported-Domain: example.com

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

From: Demo CRM <news@example.com>
To: redacted@mail.ru
Subject: Новые тарифы
Message-ID: <c0ffee.2@mailer>
List-Unsubscribe: {list_unsubscribe}
List-Unsubscribe-Post: List-Unsubscribe=One-Click
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Текст письма.

--part1_13d.2e68ed54_boundary--
"""

MAILTO_UNSUBSCRIBE = """\
From: Anna <anna.k@example.com>
To: unsubscribe@news.example.com
Subject: {subject}
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

This message was sent by the mail client's "Unsubscribe" button.
"""


def bounce(
    recipient: str,
    list_unsubscribe: str,
    *,
    status: str = "5.1.1",
    reply: str = "550 5.1.1 <{r}>: Recipient address rejected: User unknown in virtual "
    "mailbox table",
    action: str = "failed",
) -> bytes:
    text = reply.format(r=recipient)
    cut = text.rfind(" ", 0, 40)
    folded = text[:cut] + "\n   " + text[cut:]  # Postfix folds long diagnostic codes
    return POSTFIX_BOUNCE.format(
        recipient=recipient,
        list_unsubscribe=list_unsubscribe,
        status=status,
        reply=text,
        reply_folded=folded,
        action=action,
    ).encode()


def complaint(
    list_unsubscribe: str, *, sender: str = "fbl@corp.mail.ru", feedback_type: str = "abuse"
) -> bytes:
    """mail.ru's feedback-loop report (CRLF line ends, as it arrives: ready to DKIM-sign)."""
    text = ARF_COMPLAINT.format(
        list_unsubscribe=list_unsubscribe, sender=sender, feedback_type=feedback_type
    )
    return text.replace("\n", "\r\n").encode()


def mailto_unsubscribe(subject: str) -> bytes:
    return MAILTO_UNSUBSCRIBE.format(subject=subject).encode()
