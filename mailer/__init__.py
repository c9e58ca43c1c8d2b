"""Shared, engine-independent parts of mailer: settings, campaign authoring, the embedded stack."""
