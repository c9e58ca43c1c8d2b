"""Exceptions that end a command with a clear message instead of a traceback."""


class MailerError(Exception):
    """Base class: the message is meant for the operator, one problem per line."""

    exit_code = 1


class ConfigError(MailerError):
    """A setting is missing or has an invalid value; the message names the variable."""

    exit_code = 2


class InputError(MailerError):
    """Operator input (a file, an option) was rejected; nothing was written.

    ``problems`` holds one line per problem, each naming where it is (file, line, field).
    """

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class StackError(MailerError):
    """The embedded stack could not start or stop a part (port taken, process died)."""
