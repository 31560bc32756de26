"""Text extraction for formats that are not plain text: HTML (to Markdown-ish text), MDX and PDF."""

from __future__ import annotations

import io
import re

from bs4 import BeautifulSoup


def html_to_markdown(html: str) -> tuple[str, str]:
    """Title and text of an HTML page; headings become `#` lines so chunks keep their heading path."""
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "svg", "nav", "footer"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else ""
    if soup.title:
        soup.title.decompose()
    for level in range(1, 7):
        for h in soup.find_all(f"h{level}"):
            h.replace_with(f"\n\n{'#' * level} {h.get_text(' ', strip=True)}\n\n")
    for li in soup.find_all("li"):
        li.insert_before("\n- ")
    for pre in soup.find_all("pre"):
        pre.replace_with(f"\n\n```\n{pre.get_text()}\n```\n\n")
    for block in soup.find_all(["p", "div", "section", "article", "table", "tr", "br", "ul", "ol"]):
        block.insert_after("\n\n" if block.name in ("p", "table", "ul", "ol", "section", "article") else "\n")
    text = soup.get_text()
    return title, text


def pdf_to_text(raw: bytes) -> tuple[str, str]:
    """Title (from PDF metadata) and the text of every page."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    from promptly.errors import DocumentError

    try:
        reader = PdfReader(io.BytesIO(raw))
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata.title if reader.metadata and reader.metadata.title else "") or ""
    except (PdfReadError, ValueError, KeyError, TypeError) as err:
        raise DocumentError(f"unreadable PDF: {err}") from None
    return str(title), "\n\n".join(pages)


_FENCE = re.compile(r"^\s*(```|~~~)")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.DOTALL)
_FRONT_TITLE = re.compile(r"^title:\s*[\"']?(.*?)[\"']?\s*$", re.MULTILINE)
_ESM = re.compile(r"^(?:import|export)\s")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^<>\s]+)>")
_JSX_COMMENT = re.compile(r"\{/\*.*?\*/\}", re.DOTALL)
_TAG = re.compile(r"</?[A-Za-z][\w.:-]*(?:\s(?:[^<>{}]|\{[^{}]*\})*)?/?>", re.DOTALL)
_ADMONITION = re.compile(r"^\s*:::\s*(\w+)?[ \t]*(.*)$", re.MULTILINE)
_INLINE_CODE = re.compile(r"`[^`\n]+`")


def mdx_to_markdown(mdx: str) -> tuple[str, str]:
    """Title (front matter's `title:`) and the Markdown of an MDX page (Docusaurus, Nextra, ...).

    `import` / `export` statements (up to their closing bracket or semicolon) and JSX/HTML tags go,
    the text between tags stays; `{/* comments */}` go; Docusaurus admonitions (`:::note Title`) become
    "Note: Title". Fenced and inline code are kept exactly as written.
    """
    title = ""
    front = _FRONT_MATTER.match(mdx)
    if front:
        found = _FRONT_TITLE.search(front.group(1))
        title = found.group(1).strip() if found else ""
        mdx = mdx[front.end():]
    out: list[str] = []
    prose: list[str] = []
    in_code, esm_depth = False, 0
    for line in mdx.split("\n"):
        if _FENCE.match(line) and esm_depth == 0:
            if not in_code:
                out.append(_mdx_prose("\n".join(prose)))
                prose = []
            in_code = not in_code
            out.append(line)
            continue
        if in_code:
            out.append(line)
            continue
        if esm_depth or _ESM.match(line):  # a statement may run over lines: follow its brackets
            esm_depth = max(0, esm_depth + sum(line.count(c) for c in "{([") - sum(line.count(c) for c in "})]"))
            continue
        prose.append(line)
    out.append(_mdx_prose("\n".join(prose)))
    return title, "\n".join(out)


def _mdx_prose(text: str) -> str:
    """Tags and comments out of MDX text outside code fences; inline code spans untouched."""
    codes: list[str] = []

    def keep(match: re.Match[str]) -> str:
        codes.append(match.group(0))
        return f"\x00{len(codes) - 1}\x00"

    text = _INLINE_CODE.sub(keep, text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _JSX_COMMENT.sub("", text)
    text = _TAG.sub("", text)
    text = _ADMONITION.sub(lambda m: f"{m.group(1).capitalize()}: {m.group(2)}".rstrip(": ") + "\n"
                           if m.group(1) else "", text)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], text)
