"""How a notice is shaped for each webhook: the request a preset makes. Pure.

- `json`: the notice's JSON (`Notice.to_json`), for your own receiver.
- `slack`: an incoming webhook's `{"text": ...}` in Slack's mrkdwn (`&`, `<`, `>` escaped, so
  log text cannot make links or mentions).
- `discord`: a webhook's `{"content": ...}`, at most 2,000 characters, mentions disabled (a log
  line holding `@everyone` pings no one).
- `ntfy`: the plain text as the body, title, priority and tags in headers (ntfy's publish API:
  POST to https://ntfy.sh/TOPIC or your server's topic URL).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from supervisor.events import Severity
from supervisor.notify.message import Notice

DISCORD_MAX = 2000
_NTFY_PRIORITY = {Severity.INFO: "2", Severity.WARNING: "3", Severity.ERROR: "4"}
_NTFY_TAGS = {Severity.INFO: "white_check_mark", Severity.WARNING: "warning"}


@dataclass(frozen=True, slots=True)
class WebRequest:
    url: str
    body: bytes
    headers: dict[str, str]


def shape(
    preset: str, url: str, notice: Notice, headers: dict[str, str] | None = None
) -> WebRequest:
    """The POST request for `notice` to `url` in `preset`'s shape; `headers` are added last."""
    if preset == "slack":
        req = _json(url, {"text": slack_text(notice)})
    elif preset == "discord":
        req = _json(url, {
            "content": discord_text(notice), "username": "ftmon",
            "allowed_mentions": {"parse": []},
        })  # fmt: skip
    elif preset == "ntfy":
        req = WebRequest(url, ntfy_body(notice).encode(), {
            "Content-Type": "text/plain; charset=utf-8",
            "Title": _header(notice.title),
            "Priority": _NTFY_PRIORITY.get(notice.severity, "5"),
            "Tags": _NTFY_TAGS.get(notice.severity, "rotating_light"),
        })  # fmt: skip
    else:
        req = _json(url, notice.to_json())
    return WebRequest(req.url, req.body, {**req.headers, **(headers or {})})


def _json(url: str, data: object) -> WebRequest:
    return WebRequest(url, json.dumps(data).encode(), {"Content-Type": "application/json"})


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(notice: Notice) -> str:
    out = [f"*{_slack_escape(notice.title)}*"]
    if notice.seen:
        out.append(f"*seen:* {_slack_escape(notice.seen)}")
    if notice.evidence:
        body = "\n".join(_slack_escape(e.replace("```", "'''")) for e in notice.evidence)
        out.append(f"```{body}```")
    if notice.did:
        out.append(f"*did:* {_slack_escape(notice.did)}")
    if notice.look:
        out.append(f"*look:* `{_slack_escape(notice.look)}`")
    return "\n".join(out)


def discord_text(notice: Notice) -> str:
    out = [f"**{notice.title}**"]
    if notice.seen:
        out.append(f"**seen:** {notice.seen}")
    if notice.evidence:
        body = "\n".join(e.replace("```", "'''") for e in notice.evidence)
        out.append(f"```\n{body}\n```")
    if notice.did:
        out.append(f"**did:** {notice.did}")
    if notice.look:
        out.append(f"**look:** `{notice.look}`")
    text = "\n".join(out)
    if len(text) <= DISCORD_MAX:
        return text
    # Cut the evidence, never the title or where to look.
    tail = f"\n**look:** `{notice.look}`" if notice.look else ""
    return text[: DISCORD_MAX - len(tail) - 4] + " ..." + tail


def ntfy_body(notice: Notice) -> str:
    """The text without its title (ntfy shows the title header above it)."""
    return notice.text().split("\n", 1)[1] if "\n" in notice.text() else notice.title


def _header(text: str) -> str:
    """A header value: one line of ASCII (http.client refuses anything else)."""
    one = " ".join(text.split())
    return one.encode("ascii", "replace").decode("ascii")[:250]
