"""The demo: the embedded stack, a demo user and account, a campaign from a bundled CSV."""
