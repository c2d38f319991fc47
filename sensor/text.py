"""Text from a container or a sensor, made safe for an analyst's terminal.

A command line, a file name or a container name is chosen by whoever runs in the container: ESC,
CSI and OSC sequences in it could erase lines, fake rows, hide text or plant links when a CLI prints
it. Human output passes every line it prints through :func:`visible`; JSON output escapes by itself.
"""

from __future__ import annotations


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(text: str) -> str:
    """``text`` with every character that is not printable shown as an escape: C0 controls (newline
    and tab included: one printed line stays one line), DEL, C1 controls, bidi overrides and other
    format characters, line and paragraph separators, surrogates, unassigned code points. A plain
    space stays; a backslash stays as it is. Printable text is returned as it is, at once."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)
