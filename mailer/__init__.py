"""mailer's own floors, beside the design card's ``workflows/``, ``activities/`` and ``db/``.

Each floor imports only the floors below it (``lint-imports``; docs/architecture.md):

- apps: :mod:`mailer.cli`, :mod:`mailer.web`, :mod:`mailer.inbound`, :mod:`mailer.simulate`,
  :mod:`mailer.stack`, :mod:`mailer.demo`
- :mod:`mailer.operations` (what operators and the CRM do to campaigns) and
  :mod:`mailer.runtime` (the worker process), which never import each other
- :mod:`mailer.doctor`: the probes and checks of the sixty-second diagnosis
- ``activities`` → ``db`` → ``workflows``
- :mod:`mailer.core`: settings, errors, JSON, process exit, the Temporal client
- :mod:`mailer.mail`: the pure mail library (addresses, MIME, SMTP replies, TLS, templates,
  unsubscribe tokens, pacing groups)
"""
