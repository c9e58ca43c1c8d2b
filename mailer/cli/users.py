"""``mailer user``: the CRM users who create campaigns."""

from __future__ import annotations

from typing import Annotated

import typer

from mailer.cli.support import db_session, reports_errors
from mailer.operations.accounts import add_user

app = typer.Typer(help="CRM users (campaign creators).", no_args_is_help=True)


@app.command("add")
@reports_errors
def user_add(
    username: str,
    email: Annotated[str, typer.Option(help="The user's own address (informational).")] = "",
) -> None:
    """Add a user and print its id."""
    with db_session() as session:
        user = add_user(session, username, email)
        user_id = user.id
    print(user_id)
