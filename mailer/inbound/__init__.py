"""Mail that comes back: ``mailto:`` unsubscribes, bounces and complaints.

``mailer web`` also listens for mail on ``MAILER_INBOUND_PORT``: the mailbox of the
``List-Unsubscribe`` ``mailto:`` URI, the address delivery reports come back to and the
address a mailbox provider's feedback loop reports to are routed there. Each message is read
(:mod:`mailer.inbound.reports`, pure), acted on (:mod:`mailer.inbound.handling`, the
suppression list) and answered over SMTP (:mod:`mailer.inbound.receiver`).
"""
