"""Helpers the tests share (no test module imports another): the harness on real servers,
the CLI's runners, the playbook's SQL, a real Postfix, ``mailer web`` as a fixture."""
