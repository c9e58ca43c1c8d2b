"""``mailer simulate``: forecast campaigns by running the real workflow in skipped time."""
