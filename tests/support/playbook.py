"""The on-call playbook's SQL, read from the playbook itself so tests run it as written."""

from __future__ import annotations

import re

from tests.support.harness import PROJECT_ROOT

# The seed's playbook lives in shared/ beside the checkout; docs/ keeps a copy for CI.
CANDIDATES = (
    PROJECT_ROOT.parent / "shared/seed/mailer-oncall-playbook.md",
    PROJECT_ROOT / "docs/mailer-oncall-playbook.md",
)
SECTIONS = ("1", "2", "5")  # the diagnosis and the useful queries; 3 is the runbook


def playbook() -> str:
    for path in CANDIDATES:
        if path.exists():
            return path.read_text()
    raise AssertionError("the on-call playbook is missing")


def sql_blocks(sections: tuple[str, ...] = SECTIONS) -> list[tuple[str, str]]:
    """(section heading, SQL) for each ```sql block in the chosen ``## N.`` sections."""
    blocks = []
    for part in re.split(r"^## ", playbook(), flags=re.MULTILINE)[1:]:
        heading = part.splitlines()[0]
        if heading.split(".")[0] in sections:
            blocks += [(heading, sql) for sql in re.findall(r"```sql\n(.*?)```", part, re.DOTALL)]
    return blocks


def runbook_sql(fragment: str, campaign_id: str) -> str:
    """The section-3 runbook block containing ``fragment``, for one campaign."""
    sql = next(sql for _, sql in sql_blocks(("3",)) if fragment in sql)
    return sql.replace("<campaign_uuid>", campaign_id)


def fill(sql: str, values: dict[str, object]) -> str:
    """The block with its placeholders replaced by the seeded rows' values."""
    return (
        sql.replace("<campaign_uuid>", str(values["campaign"]))
        .replace("<campaign_id>", f"'{values['campaign']}'")
        .replace("<user_id>", str(values["user_id"]))
        .replace("<queue_id>", str(values["queue_id"]))
        .replace("<email>", "someone@example.org")
    )
