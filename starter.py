"""The operator CLI's entry point (``python starter.py …``; installed as ``mailer``).

The commands live in :mod:`mailer.cli`, one module per command group.
"""

from mailer.cli import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
