"""The service's pages, in Russian like the CRM's recipients: small, no scripts, no assets."""

from __future__ import annotations

from html import escape

_PAGE = """<!doctype html>
<html lang="ru">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto; padding: 0 1rem;
       color: #222; line-height: 1.5; }}
button {{ font-size: 1rem; padding: .6rem 1.4rem; border: 0; border-radius: .4rem;
          background: #c0392b; color: #fff; cursor: pointer; }}
.muted {{ color: #666; font-size: .9rem; }}
</style>
</head>
<body>
<h1>{title}</h1>
{body}
</body>
</html>
"""


def page(title: str, body: str) -> str:
    return _PAGE.format(title=escape(title), body=body)


def confirm(masked: str, action: str) -> str:
    """GET /u/TOKEN: one button; a GET alone never unsubscribes (link scanners follow it)."""
    who = f" для <b>{escape(masked)}</b>" if masked else ""
    return page(
        "Отписаться от рассылки",
        f"<p>Вы больше не будете получать письма этой рассылки{who}.</p>"
        f'<form method="post" action="{escape(action)}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit" id="unsubscribe">Отписаться</button></form>'
        '<p class="muted">Если вы попали сюда случайно, просто закройте страницу.</p>',
    )


def already(masked: str) -> str:
    who = f" <b>{escape(masked)}</b>" if masked else ""
    return page(
        "Вы уже отписаны",
        f"<p>Адрес{who} уже исключён из рассылок. Ничего делать не нужно.</p>",
    )


def done(masked: str) -> str:
    who = f" <b>{escape(masked)}</b>" if masked else ""
    return page(
        "Вы отписаны",
        f'<p id="done">Готово: адрес{who} больше не будет получать наши рассылки.</p>',
    )


def bad_link(reason: str) -> str:
    return page(
        "Ссылка недействительна",
        "<p>Эта ссылка для отписки повреждена или не наша. Ничего не изменено.</p>"
        "<p>Скопируйте ссылку из письма целиком или ответьте на письмо со словом "
        "«отписаться».</p>"
        f'<p class="muted">({escape(reason)})</p>',
    )
