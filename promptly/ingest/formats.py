"""Text extraction for formats that are not plain text: HTML (to Markdown-ish text) and PDF."""

from __future__ import annotations

import io

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

    from promptly.ingest.documents import DocumentError

    try:
        reader = PdfReader(io.BytesIO(raw))
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata.title if reader.metadata and reader.metadata.title else "") or ""
    except (PdfReadError, ValueError, KeyError, TypeError) as err:
        raise DocumentError(f"unreadable PDF: {err}") from None
    return str(title), "\n\n".join(pages)
