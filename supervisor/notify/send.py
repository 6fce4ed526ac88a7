"""Every OS effect of notifying, behind one function: `send(target, notice, timeout)` posts a
webhook, runs a command with the notice as JSON on stdin, or raises a desktop notification
(`notify-send`) / rings the terminal bell. Raises `SendError` with a one-line reason.

Called from the delivery threads only, never on the supervisor's event loop.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request

from supervisor.events import Severity
from supervisor.notify.config import NotifyTarget
from supervisor.notify.message import Notice
from supervisor.notify.presets import WebRequest, shape

# A webhook's answer is read (and dropped) up to this much, so that the connection closes cleanly.
MAX_ANSWER = 64 * 1024


class SendError(Exception):
    """A delivery attempt failed; `str()` is the reason, one line."""


def send(target: NotifyTarget, notice: Notice, timeout: float) -> None:
    if target.command is not None:
        run_command(target.command, json.dumps(notice.to_json()).encode(), timeout)
    elif target.desktop:
        desktop(notice, timeout)
    else:
        url = target.url()
        if not url:
            where = f"${target.webhook_env} is not set" if target.webhook_env else "no URL"
            raise SendError(f"{where} (the webhook's URL)")
        if not url.startswith(("http://", "https://")):
            raise SendError("the webhook URL is not an http(s) URL (redacted in the history? "
                            "give it with webhook_env)")  # fmt: skip
        post(shape(target.preset, url, notice, target.headers), timeout)


def post(request: WebRequest, timeout: float) -> int:
    """POST the request; the HTTP status (2xx), else SendError."""
    req = urllib.request.Request(request.url, data=request.body, method="POST")
    for name, value in request.headers.items():
        req.add_header(name, value)
    req.add_header("User-Agent", "ftmon")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read(MAX_ANSWER)
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        raise SendError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise SendError(f"no answer in {timeout:g} s") from None
        raise SendError(f"cannot connect: {exc.reason}") from None
    except TimeoutError:
        raise SendError(f"no answer in {timeout:g} s") from None
    except (OSError, ValueError) as exc:  # a reset connection, a malformed URL
        raise SendError(str(exc) or type(exc).__name__) from None


def run_command(argv: list[str], stdin: bytes, timeout: float) -> None:
    """Run `argv` (no shell) with `stdin`; exit 0 or SendError. Its own session, so that a
    Ctrl-C meant for ftmon does not reach it."""
    try:
        proc = subprocess.run(
            argv, input=stdin, capture_output=True, timeout=timeout, start_new_session=True,
            check=False,
        )  # fmt: skip
    except FileNotFoundError:
        raise SendError(f"{argv[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise SendError(f"{argv[0]}: still running after {timeout:g} s (killed)") from None
    except OSError as exc:
        raise SendError(f"{argv[0]}: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        said = f": {err[-1][:200]}" if err else ""
        raise SendError(f"{argv[0]} exited with {proc.returncode}{said}")


_URGENCY = {Severity.INFO: "low", Severity.WARNING: "normal"}


def desktop(notice: Notice, timeout: float) -> None:
    """`notify-send` where it is installed, else the terminal bell on the controlling terminal."""
    exe = shutil.which("notify-send")
    if exe is not None:
        urgency = _URGENCY.get(notice.severity, "critical")
        body = notice.text().split("\n", 1)[-1]
        run_command([exe, "--app-name=ftmon", f"--urgency={urgency}", notice.title, body],
                    b"", timeout)  # fmt: skip
        return
    try:
        with open("/dev/tty", "w") as tty:
            tty.write("\a")
    except OSError:
        raise SendError("no notify-send and no terminal to ring") from None
