"""``mailer doctor``: the playbook's 60-second diagnosis in one command.

- :mod:`mailer.doctor.facts` — what was observed (plain dataclasses, JSON-able);
- :mod:`mailer.doctor.probes` — the I/O: Temporal, PostgreSQL and Redis, each under a
  deadline, so a part that is down is reported (address and error) and never hangs;
- :mod:`mailer.doctor.checks` — pure decisions: each alert of ``deploy/prometheus/alerts.yml``
  and each part, evaluated OK / WARN / CRIT with the action to take;
- :mod:`mailer.doctor.report` — the text and JSON the operator reads.
"""
