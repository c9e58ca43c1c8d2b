"""The embedded stack: every server mailer needs, from PyPI packages, no Docker, no root."""
