"""``python -m mailer.cli …``: the same as the ``mailer`` console script."""

from mailer.cli import main

main()
