"""All of mailer's I/O, as Temporal activities: database, Redis, SMTP, the smtp.bz API.

:mod:`activities.interface` declares the activities (what workflows call);
:mod:`activities.mailer_activities` implements them for the worker. The other modules are
one concern each: the ledger (database), sending (SMTP batches), messages, the rate limiter
and the quota API. Importing this package imports none of them.
"""
