# eshop phase 9: every task result as one JSON object per line, for eshop's
# progress display and change counts (it never parses ansible's stdout).
from __future__ import annotations

DOCUMENTATION = r"""
name: eshop_events
type: aggregate
short_description: Writes each task result and the final stats as JSON lines for eshop
description:
  - Appends one JSON object per line to the file named by the environment
    variable C(ESHOP_ANSIBLE_EVENTS); does nothing when it is unset or empty.
  - A task result is an object with event C(task) and the keys host,
    playbook (its file name), play, task, status (ok, changed, failed,
    skipped or unreachable) and secs (how long the task took on that host,
    for eshop's benchmark); failed and unreachable results add a short msg (and ignored set to true when the
    task's errors are ignored). The last line has event C(stats) and hosts,
    each host's ok, changed, failures, unreachable and skipped counts.
  - No other part of a result is written, and a result under C(no_log) has
    its message replaced, so nothing a task hides reaches the file.
requirements:
  - enabled in ansible.cfg (callbacks_enabled = eshop_events)
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase

# What a line says instead of a message that no_log hides.
_HIDDEN = "output hidden (no_log)"
# Longest message kept: enough for a module's error, not for a whole stdout.
_MSG_MAX = 500


def _parts(result):
    """(host name, task, result dict): ansible-core 2.19's public names, or
    the private ones older releases have."""
    host = getattr(result, "host", None) or result._host
    task = getattr(result, "task", None) or result._task
    data = result.result if hasattr(result, "result") else result._result
    return host.get_name(), task, data


class CallbackModule(CallbackBase):
    """Writes task results and the final stats for eshop, one JSON object per line."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "eshop_events"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._path = os.environ.get("ESHOP_ANSIBLE_EVENTS", "")
        self._out = None
        self._play = ""
        self._playbook = ""
        # (host, task uuid) -> when the task started on that host.
        self._started = {}

    # --- writing ------------------------------------------------------------

    def _emit(self, event):
        if not self._path:
            return
        if self._out is None:
            # Append: plan and apply may run several playbooks into one file.
            # Line-buffered, so eshop sees each result as it happens.
            self._out = open(self._path, "a", encoding="utf-8", buffering=1)
        self._out.write(json.dumps(event, ensure_ascii=False, sort_keys=True) + "\n")

    @staticmethod
    def _msg(result):
        _, task, data = _parts(result)
        if data.get("_ansible_no_log") or data.get("censored") or getattr(task, "no_log", False):
            return _HIDDEN
        msg = data.get("msg") or data.get("stderr") or data.get("reason") or ""
        if not isinstance(msg, str):
            msg = json.dumps(msg, ensure_ascii=False, default=str)
        msg = msg.strip()
        if len(msg) > _MSG_MAX:
            msg = msg[: _MSG_MAX - 1] + "…"
        return msg

    def _task(self, result, status, msg=None, ignored=False):
        host, task, _ = _parts(result)
        event = {
            "event": "task",
            "host": host,
            "playbook": self._playbook,
            "play": self._play,
            "task": task.get_name().strip(),
            "status": status,
            "secs": round(time.monotonic() - self._started.pop((host, task._uuid), time.monotonic()), 3),
        }
        if msg is not None:
            event["msg"] = msg
        if ignored:
            event["ignored"] = True
        self._emit(event)

    # --- ansible's callbacks ------------------------------------------------

    def v2_playbook_on_start(self, playbook):
        # One ansible-playbook may run several playbooks in a row.
        self._playbook = os.path.basename(playbook._file_name)

    def v2_playbook_on_play_start(self, play):
        self._play = play.get_name().strip()

    def v2_runner_on_start(self, host, task):
        self._started[(host.get_name(), task._uuid)] = time.monotonic()

    def v2_runner_on_ok(self, result):
        # Loops report here once more for the whole task (changed if any
        # item changed): the per-item callbacks are left alone on purpose.
        self._task(result, "changed" if _parts(result)[2].get("changed", False) else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._task(result, "failed", self._msg(result), ignored=ignore_errors)

    def v2_runner_on_skipped(self, result):
        self._task(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._task(result, "unreachable", self._msg(result))

    def v2_playbook_on_stats(self, stats):
        hosts = {}
        for host in sorted(stats.processed.keys()):
            s = stats.summarize(host)
            hosts[host] = {k: s.get(k, 0) for k in ("ok", "changed", "failures", "unreachable", "skipped")}
        self._emit({"event": "stats", "hosts": hosts})
        if self._out is not None:
            self._out.close()
            self._out = None
