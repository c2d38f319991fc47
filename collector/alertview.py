"""How alerts look in an analyst's terminal: ``alerts list`` fitted to its width, ``alerts show``
with the process ancestry and the alert's history, times in one format, priorities in colour.

Every cell passes through :func:`sensor.text.visible` before it is measured, so a container name
or a command line chosen inside a container never reaches the terminal raw, and widths count what
is printed. Colour only when the output is a terminal and ``NO_COLOR`` is not set (no-color.org).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from sensor.events import rfc3339
from sensor.text import visible

ELLIPSIS = "…"
MIN_RULE_COLUMNS = 16  # a rule name gets at least this much, even if the line passes the width
MIN_CONTAINER_COLUMNS = 10  # what the container column keeps on a narrow terminal
WIDE_EXTRA_COLUMNS = 40  # room past the rule names that adds the process and command line columns
_COLOURS = {"EMERGENCY": "1;31", "ALERT": "1;31", "CRITICAL": "1;31", "ERROR": "31", "WARNING": "33",
            "NOTICE": "36"}


def human_time(time_ns: int) -> str:
    """RFC 3339 in UTC to the second, the one form every human output uses ("-" for 0)."""
    return rfc3339(time_ns)[:19] + "Z" if time_ns else "-"


def human_time_text(text: str) -> str:
    """An RFC 3339 text (as alert JSON holds it) in :func:`human_time`'s form."""
    return text[:19] + "Z" if len(text) >= 19 else text or "-"


def use_colour(stream: IO[str]) -> bool:
    """Colour only for a terminal, and never with ``NO_COLOR`` set to anything but empty."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR")


def paint(text: str, priority: str, on: bool) -> str:
    """``text`` in its priority's colour when ``on`` (the text itself is already made visible)."""
    code = _COLOURS.get(priority.upper())
    return f"\x1b[{code}m{text}\x1b[0m" if on and code else text


def terminal_columns() -> int:
    """The terminal's width (``COLUMNS`` first, as shutil reads it); 80 when not a terminal."""
    return max(shutil.get_terminal_size((80, 24)).columns, 40)


def shorten(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters: cut at a word boundary when there is one in the
    last third, always with a visible ellipsis when cut."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    head = text[:width - 1]
    space = head.rfind(" ")
    if space >= (width * 2) // 3:
        head = head[:space]
    return head.rstrip() + ELLIPSIS


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[dict[str, Any]], str]
    cap: int  # the most columns it takes (longer values are shortened with an ellipsis)
    right: bool = False


def _command_line(r: dict[str, Any]) -> str:
    return " ".join(r["args"]) if r["args"] else r["exe"] or "-"


_FIXED = (Column("ID", lambda r: str(r["id"]), 12, right=True),
          Column("LAST SEEN", lambda r: human_time_text(r["last_seen"]), 20),
          Column("PRIORITY", lambda r: r["priority"], 13),
          Column("STATUS", lambda r: r["status"], 12),
          Column("N", lambda r: str(r["count"]), 8, right=True),
          Column("CONTAINER", lambda r: r["container_name"] or r["container_id"][:12] or "host", 20))
_PROCESS = Column("PROCESS", lambda r: r["exe"] or "-", 32)
_RULE_HEADER, _CMD_HEADER = "RULE", "COMMAND LINE"


def alert_table(rows: list[dict[str, Any]], columns: int, colour: bool = False, fixed: bool = False) -> list[str]:
    """``rows`` (alert JSON) as a table, one line an alert, in at most ``columns`` characters a
    line: the fixed columns as wide as their widest value (``fixed``: as wide as they may be, for
    rows printed one at a time), the rule name in what is left (shortened at a word boundary with
    a visible ellipsis if it does not fit); when the width leaves room, the process and the
    command line too."""
    cells = [[visible(c.value(r)) for c in _FIXED] for r in rows]
    widths = [c.cap if fixed else min(c.cap, max([len(c.header)] + [len(row[i]) for row in cells]))
              for i, c in enumerate(_FIXED)]
    if fixed:
        widths[0], widths[4] = 7, 5  # ids and counts to millions
    rules = [visible(r["rule"]) for r in rows]
    rule_nat = max([len(_RULE_HEADER)] + [len(x) for x in rules])
    rest = columns - sum(widths) - len(widths)
    if rest < rule_nat and not fixed:  # narrow: the container column gives the rule name room first
        give = min(rule_nat - rest, max(widths[5] - MIN_CONTAINER_COLUMNS, 0))
        widths[5] -= give
        rest += give
    wide = rest - rule_nat >= WIDE_EXTRA_COLUMNS
    rule_w = rule_nat if wide else max(rest, MIN_RULE_COLUMNS)
    procs = [visible(_PROCESS.value(r)) for r in rows]
    proc_w = min(_PROCESS.cap, max([len(_PROCESS.header)] + [len(p) for p in procs]))
    cmd_w = max(rest - rule_w - proc_w - 2, len(_CMD_HEADER))
    header = _line([c.header for c in _FIXED], widths) + " " + _RULE_HEADER.ljust(rule_w)
    if wide:
        header += f" {_PROCESS.header:<{proc_w}} {_CMD_HEADER}"
    out = [header.rstrip()]
    prio_at = sum(widths[:2]) + 2
    for row, rule, proc, r in zip(cells, rules, procs, rows, strict=True):
        cut = [shorten(v, w) for v, w in zip(row, widths, strict=True)]
        text = _line(cut, widths)
        text = text[:prio_at] + paint(cut[2].ljust(widths[2]), r["priority"], colour) + text[prio_at + widths[2]:]
        line = f"{text} {shorten(rule, rule_w):<{rule_w}}"
        if wide:
            line += f" {shorten(proc, proc_w):<{proc_w}} {shorten(visible(_command_line(r)), cmd_w)}"
        out.append(line.rstrip())
    return out


def _line(values: list[str], widths: list[int]) -> str:
    return " ".join(v.rjust(w) if c.right else v.ljust(w) for v, w, c in zip(values, widths, _FIXED, strict=True))


def alert_lines(row: dict[str, Any], history: list[dict[str, Any]], colour: bool = False) -> list[str]:
    """``alerts show``: what ``--json`` has, for people. The process is the latest occurrence's;
    its ancestry one level a line, nearest first, with pid and command line where the sensor knew
    them, and a parent it could not resolve says why."""
    lines = [f"alert {row['id']}  {paint(visible(row['priority']), row['priority'], colour)}  "
             f"{visible(row['rule'])}  [{row['status']}]  x{row['count']}",
             f"  {row['output']}",
             f"  container {row['container_name']} ({row['container_id'][:12]})  image {row['image']}",
             f"  process   pid {row['pid']}  ppid {row['ppid']}  uid {row['uid']}  {_command_line(row)}",
             f"  ancestry  {' <- '.join(row['ancestry']) or '-'}"]
    lines += ancestry_lines(row)
    lines += [f"  action    {row['action']}   mode {row['mode'] or '-'}",
              f"  seen      first {human_time_text(row['first_seen'])}  last {human_time_text(row['last_seen'])}",
              f"  sensor    {row['sensor_id']}  node {row['node'] or '-'}",
              f"  tags      {', '.join(row['tags']) or '-'}"]
    if row["during_loss"]:
        lines.append("  during_loss  yes: the sensor was dropping events then (context may be incomplete)")
    if row["comment"]:
        lines.append(f"  comment   {row['comment']}")
    empty: tuple[Any, ...] = ("", None, [], {})
    lines += [f"  why.{key:<10} {value}" for key, value in row["explanation"].items() if value not in empty]
    lines += history_lines(history)
    return [line if i == 0 else visible(line) for i, line in enumerate(lines)]


def ancestry_lines(row: dict[str, Any]) -> list[str]:
    """The parent and each ancestor above it, one a line with pid, executable and command line
    (as the sensor's process table knew them), and why the chain stops where it does; from a
    sensor that sends no ancestors, the parent's pid and executable and the executables above."""
    if row["kind"] == "rate_anomaly" and not row["pid"]:
        return ["    parent    - (a rate anomaly is about the container's window, not one process)"]
    if row.get("ancestors"):
        out = [f"    {'parent' if i == 0 else 'ancestor':<9} pid {a['pid']:<7} {a['exe'] or '?'}  "
               f"{' '.join(a['args']) if a['args'] else '(no command line)'}" for i, a in enumerate(row["ancestors"])]
        if row.get("ancestors_end"):
            out.append(f"    above     unresolved: {row['ancestors_end']}")
        return out
    if row.get("ancestors_end"):
        return [f"    parent    pid {row['ppid']}  unresolved: {row['ancestors_end']}"]
    ancestry = list(row["ancestry"])
    parent = ancestry[0] if ancestry else ""
    if not row["ppid"]:
        return ["    parent    unresolved: the finding carries no parent pid (the sensor had no process "
                "header for it, e.g. a process that started before the sensor)"]
    if not parent:
        return [f"    parent    pid {row['ppid']}  unresolved: the sensor never saw it exec (it started before "
                "the sensor, or its exec record was dropped)"]
    out = [f"    parent    pid {row['ppid']}  {parent}"]
    out += [f"    ancestor  {exe}  (pid not recorded)" for exe in ancestry[1:]]
    return out


def history_lines(history: list[dict[str, Any]]) -> list[str]:
    """The alert's status changes, oldest first: when, who, from and to, the comment."""
    if not history:
        return ["  history   - (no change by an analyst yet)"]
    return ["  history"] + [f"    {human_time(h['time_ns'])}  {h['actor'] or '-'}  {h['from']} -> {h['to']}"
                            + (f"  {h['comment']!r}" if h["comment"] else "") for h in history]
