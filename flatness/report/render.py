"""Render a report as Markdown (figures as PNG files beside it) and as one HTML file.

A report is a list of :class:`Section` objects holding blocks: paragraphs, bullet
lists, tables and figures. :func:`to_markdown` links the PNG files by relative path;
:func:`to_html` embeds them as ``data:`` URIs with inline CSS, so the page opens from
disk with no network and can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from flatness.report.tables import Table


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of plain text."""

    text: str


@dataclass(frozen=True)
class Bullets:
    """A bullet list of plain-text items."""

    items: tuple[str, ...]


@dataclass(frozen=True)
class Links:
    """A bullet list of links to files beside the report: ``(text, relative path)``."""

    items: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class FigureBlock:
    """A PNG figure with a caption; ``path`` is relative to the report's folder."""

    path: str
    caption: str


@dataclass(frozen=True)
class TableBlock:
    """A :class:`~flatness.report.tables.Table`."""

    table: Table


Block = Paragraph | Bullets | Links | FigureBlock | TableBlock


@dataclass
class Section:
    """A titled part of a report."""

    title: str
    anchor: str
    blocks: list[Block] = field(default_factory=list)


_ALWAYS = frozenset("\\`*~#$")
"""Characters escaped wherever they are: code spans, emphasis, strikethrough, headings,
math (GitHub renders ``$...$``) and the backslash itself."""
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_LEADING = re.compile(r"([-+](?=\s|$)|[-=][-=\s]*$)|(\d+)([.)](?=\s|$))")
"""What starts a list item, a thematic break or a setext heading underline."""


def md_text(text: object, *, link_text: bool = False) -> str:
    r"""Plain text made safe for Markdown: it shows as typed and adds no markup.

    A label from the data (a regime, a measure, a path, a pair's label) cannot inject a
    link, an image, a heading, emphasis, code, raw HTML or a line break into
    ``report.md``:

    - ``&``, ``<`` and ``>`` become entities (no raw HTML, no ``<url>`` autolinks);
    - ``\``, the backtick, ``*``, ``~``, ``#`` and ``$`` are backslash-escaped everywhere, and
      ``_`` unless it stands between two letters or digits (``λ_max`` stays as is);
    - ``]`` is escaped before ``(``, ``[`` or ``:`` (no inline link or image, no
      reference link, no link definition) and ``[`` before ``^`` (no footnote); with
      ``link_text=True`` (text inside ``[...]`` of the report's own links and figures)
      every bracket is escaped;
    - ``://`` and ``www.`` are escaped, so GitHub does not turn a URL into a link;
    - a leading list marker (``-``, ``+``, ``1.``) or a text of only ``-`` or ``=`` is
      escaped (no list, no rule, no setext heading), and
      line breaks become spaces (no new block from inside a label).

    Args:
        text: The text (converted with :class:`str`).
        link_text: Escape every ``[`` and ``]`` (for text inside a link's brackets).

    Returns:
        The escaped text, on one line.

    Examples:
        >>> md_text("a <b> & c")
        'a &lt;b&gt; &amp; c'
        >>> print(md_text("[a](javascript:alert(1))"))
        [a\](javascript:alert(1))
        >>> print(md_text("# h"), md_text("λ_max *x*"), md_text("0.5 [0.1, 0.9]"), sep=" | ")
        \# h | λ_max \*x\* | 0.5 [0.1, 0.9]
    """
    s = " ".join(line.strip() for line in str(text).splitlines()).strip()
    out: list[str] = []
    for i, ch in enumerate(s):
        nxt = s[i + 1] if i + 1 < len(s) else ""
        if ch in _ENTITIES:
            out.append(_ENTITIES[ch])
        elif (
            ch in _ALWAYS
            or (ch == "_" and not (i > 0 and s[i - 1].isalnum() and nxt.isalnum()))
            or (ch == "]" and (link_text or nxt in ("(", "[", ":")))
            or (ch == "[" and (link_text or nxt == "^"))
        ):
            out.append("\\" + ch)
        else:
            out.append(ch)
    shown = "".join(out).replace("://", "\\://")
    shown = re.sub(r"(?i)\b(www)\.", r"\1\\.", shown)
    lead = _LEADING.match(shown)
    if lead is not None:
        shown = (
            "\\" + shown
            if lead.group(1)
            else f"{lead.group(2)}\\{lead.group(3)}{shown[lead.end() :]}"
        )
    return shown


def _md_cell(text: object) -> str:
    return md_text(text).replace("|", "\\|")


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``frame``'s cells, each shown as typed.

    Returns:
        The table, one line per row (each cell escaped by :func:`md_text`, and ``|``).

    Examples:
        >>> print(markdown_table(pd.DataFrame({"a": ["1"], "b|c": ["x"]})))
        | a | b\\|c |
        |---|---|
        | 1 | x |
    """
    head = "| " + " | ".join(_md_cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in frame.to_numpy()]
    return "\n".join([head, rule, *body])


def to_markdown(title: str, sections: list[Section]) -> str:
    """The report as Markdown; figures are linked by their relative paths.

    Returns:
        The page's Markdown text.
    """
    lines = [f"# {md_text(title)}", ""]
    lines += ["Contents: " + " · ".join(f"[{s.title}](#{s.anchor})" for s in sections), ""]
    for section in sections:
        lines += [f'<a id="{section.anchor}"></a>', f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Paragraph):
                lines += [md_text(block.text), ""]
            elif isinstance(block, Bullets):
                lines += [f"- {md_text(item)}" for item in block.items] + [""]
            elif isinstance(block, Links):
                lines += [f"- [{md_text(t, link_text=True)}]({href})" for t, href in block.items]
                lines += [""]
            elif isinstance(block, FigureBlock):
                alt = md_text(block.caption, link_text=True)
                caption = md_text(block.caption)
                lines += [f"![{alt}]({block.path})", "", f"*{caption}*", ""]
            else:
                table = block.table
                lines += [f"**{md_text(table.title)}**", "", markdown_table(table.frame), ""]
                lines += [f"<sub>{md_text(note)}</sub>  " for note in table.notes]
                lines += [""] if table.notes else []
    return "\n".join(lines).rstrip() + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: .5em 0 .3em; font-size: .88em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: .3em 0; }
.note { font-size: .82em; color: #555; margin: 0 0 .2em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: .88em; color: #444; }
ul.summary li { margin-bottom: .3em; }
#table-provenance td { text-align: left; }
"""


def html_table(table: Table) -> str:
    """A :class:`Table` as an HTML ``<table>`` with its caption and notes (escaped).

    Returns:
        The ``<table>`` element and its notes, as HTML text.
    """
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in table.frame.to_numpy()
    )
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in table.notes)
    return (
        f'<table id="table-{html.escape(table.key)}"><caption>{html.escape(table.title)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{notes}"
    )


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def to_html(title: str, sections: list[Section], root: Path) -> str:
    """The report as one self-contained HTML page: figures from ``root`` inlined.

    Returns:
        The page's HTML text.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<nav>"
        + "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
        + "</nav>",
    ]
    for section in sections:
        parts.append(f'<section id="{section.anchor}"><h2>{html.escape(section.title)}</h2>')
        for block in section.blocks:
            if isinstance(block, Paragraph):
                parts.append(f"<p>{html.escape(block.text)}</p>")
            elif isinstance(block, Bullets):
                items = "".join(f"<li>{html.escape(i)}</li>" for i in block.items)
                parts.append(f'<ul class="summary">{items}</ul>')
            elif isinstance(block, Links):
                items = "".join(
                    f'<li><a href="{html.escape(href)}">{html.escape(text)}</a></li>'
                    for text, href in block.items
                )
                parts.append(f"<ul>{items}</ul>")
            elif isinstance(block, FigureBlock):
                caption = html.escape(block.caption)
                parts.append(
                    f'<figure><img src="{_data_uri(root / block.path)}" alt="{caption}">'
                    f"<figcaption>{caption}</figcaption></figure>"
                )
            else:
                parts.append(html_table(block.table))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
