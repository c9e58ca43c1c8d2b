"""``mailer web``: the one-click unsubscribe service behind every message's
``List-Unsubscribe`` link (RFC 8058). See :mod:`mailer.web.app`."""
