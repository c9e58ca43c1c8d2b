"""Seconds to create a 10,000-recipient campaign (CSV parse, validation, insert).

Runs against a throwaway PostgreSQL cluster; prints the numbers. Budget: well under 5 s.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MAILER_ENV_FILES", "")

from db.engine import session_scope
from mailer.operations.accounts import add_user
from mailer.operations.authoring.create import CampaignDraft, create_campaign
from mailer.operations.authoring.recipients import parse_recipients
from mailer.stack.servers import postgres_cluster

RECIPIENTS = 10_000


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, postgres_cluster(durable=True) as cluster:
        folder = Path(tmp)
        csv_path = folder / "recipients.csv"
        rows = [
            f"user{i:05d}@example{i % 50}.com,Имя {i},Компания {i % 7}" for i in range(RECIPIENTS)
        ]
        csv_path.write_text("email,name,company\n" + "\n".join(rows) + "\n")
        (folder / "body.html").write_text("<p>{{ name }} из {{ company }}</p>")
        url = cluster.new_database()
        with session_scope(url) as session:
            add_user(session, "bench")

        started = time.perf_counter()
        parsed = parse_recipients(csv_path, max_recipients=RECIPIENTS)
        parse_seconds = time.perf_counter() - started
        assert not parsed.problems

        started = time.perf_counter()
        draft = CampaignDraft(
            name="bench",
            subject="Hi {{ name }}",
            recipients_path=csv_path,
            created_by="bench",
            html_path=folder / "body.html",
        )
        with session_scope(url) as session:
            created = create_campaign(session, draft, max_recipients=RECIPIENTS)
        total = time.perf_counter() - started
        print(f"recipients: {created.recipients}")
        print(f"parse+validate only: {parse_seconds:.2f} s")
        print(f"create campaign end to end (parse, validate, insert, commit): {total:.2f} s")


if __name__ == "__main__":
    main()
