"""The mail library: pure functions and values about mail, used by the activities that send
and by the tools that rehearse, import or receive it alike — addresses, MIME messages, SMTP
reply classes, TLS contexts, templates, unsubscribe tokens, per-domain pacing groups.

No I/O and no imports from the rest of mailer: this is the bottom floor."""
