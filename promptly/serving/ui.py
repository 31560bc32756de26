"""The Streamlit app of `promptly ui`: chat with streamed answers and their sources, uploads, and the
served version's evaluation report. It talks to `promptly serve` over HTTP only (the same API any
OpenAI client uses), so the UI can run anywhere the API is reachable.

Run it with `promptly ui`; settings come from the environment that command sets (PROMPTLY_UI_*).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import streamlit as st

API_URL = os.environ.get("PROMPTLY_UI_API_URL", "http://127.0.0.1:8000").rstrip("/")
DEFAULT_K = int(os.environ.get("PROMPTLY_UI_K", "3"))
TIMEOUT_S = float(os.environ.get("PROMPTLY_UI_TIMEOUT_S", "120"))
UPLOAD_WAIT_S = 3600.0  # how long the upload page follows a job (the server's own budget is serve.upload_timeout_s)
_KEY_ENV = os.environ.get("PROMPTLY_UI_API_KEY_ENV", "PROMPTLY_API_KEY")
HEADERS = {"Authorization": f"Bearer {os.environ[_KEY_ENV]}"} if _KEY_ENV and os.environ.get(_KEY_ENV) else {}


def api(method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{API_URL}{path}", headers=HEADERS, timeout=TIMEOUT_S, **kwargs)


def error_text(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


def served_model() -> str:
    try:
        response = api("GET", "/v1/models")
    except httpx.HTTPError as err:
        return f"(API unreachable: {err})"
    if response.status_code != 200:
        return f"(not ready: {error_text(response)})"
    return str(response.json()["data"][0]["id"])


def sidebar() -> dict[str, Any]:
    """Who asks, how many sources, which filter, which answer style."""
    st.sidebar.caption(f"model: {served_model()}")
    user = st.sidebar.text_input("User", value="guest", help="Your uploads are seen by you only")
    k = st.sidebar.slider("Sources (k)", min_value=1, max_value=10, value=DEFAULT_K)
    own = st.sidebar.checkbox("Only my uploads", value=False)
    style = st.sidebar.selectbox("Answer style", ["default", "short", "detailed"])
    quote = st.sidebar.checkbox("Quote the sources", value=False,
                                help="Answer with the best supporting source sentences instead of the model's words")
    instruction = st.sidebar.text_input("Custom instruction", value="")
    raw_filter = st.sidebar.text_area("Metadata filter (JSON)", value="", placeholder='{"document_id": "..."}')
    settings: dict[str, Any] = {"user": user, "k": k, "scope": "own" if own else "all", "style": style}
    if quote:
        settings["answer_style"] = "extractive"
    if instruction.strip():
        settings["instruction"] = instruction.strip()
    if raw_filter.strip():
        try:
            settings["filter"] = json.loads(raw_filter)
        except ValueError as err:
            st.sidebar.error(f"the filter is not JSON: {err}")
    return settings


def stream_answer(question: str, settings: dict[str, Any], final: dict[str, Any]) -> Iterator[str]:
    """The answer's text as it is generated; the last chunk's citations and ids go into `final`."""
    body = {"model": "promptly", "stream": True, "messages": [{"role": "user", "content": question}], **settings}
    with httpx.stream("POST", f"{API_URL}/v1/chat/completions", json=body, headers=HEADERS,
                      timeout=TIMEOUT_S) as response:
        if response.status_code != 200:
            response.read()
            final["error"] = error_text(response)
            return
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[len("data: "):])
            if "error" in event:
                final["error"] = event["error"]["message"]
                return
            for choice in event.get("choices", []):
                if choice["delta"].get("content"):
                    yield choice["delta"]["content"]
            if "citations" in event:
                final.update(citations=event["citations"], conversation_id=event.get("conversation_id"),
                             evidence=event.get("evidence"),
                             model=event.get("model"))


def show_sources(message: dict[str, Any], index: int) -> None:
    citations = message.get("citations") or []
    if citations:
        st.markdown("**Sources**")
    sentences = (message.get("evidence") or {}).get("sentences") or []
    for c in citations:
        for e in sentences:  # the sentence the answer rests on, under its source
            if e["number"] == c["number"]:
                shown = e.get("shown") or " ".join(e["sentence"].split())  # a table row with its column names
                st.text(f"[{c['number']}] “{shown}”")
        with st.expander(f"[{c['number']}] {c['title']}"):
            st.caption(f"{c['document_id']} · chunk {c['ordinal']} · score {c['score'] or 0:.4f}")
            st.text(c.get("content", ""))
    if message.get("model"):
        st.caption(f"answered by {message['model']}")
    if message.get("conversation_id"):
        up, down, _ = st.columns([1, 1, 8])
        for column, label, value in ((up, "👍", "up"), (down, "👎", "down")):
            if column.button(label, key=f"{value}-{index}"):
                response = api("POST", "/v1/feedback", json={"conversation_id": message["conversation_id"],
                                                             "feedback": value})
                if response.status_code == 200:
                    st.toast(f"thanks: feedback {value} saved")
                else:
                    st.error(error_text(response))


def chat_page(settings: dict[str, Any]) -> None:
    st.title("promptly chat")
    history: list[dict[str, Any]] = st.session_state.setdefault("messages", [])
    for i, message in enumerate(history):
        with st.chat_message(message["role"]):
            st.markdown(message["content"])
            if message["role"] == "assistant":
                show_sources(message, i)
    question = st.chat_input("Ask a question about the documents")
    if not question:
        return
    history.append({"role": "user", "content": question})
    with st.chat_message("user"):
        st.markdown(question)
    with st.chat_message("assistant"):
        final: dict[str, Any] = {}
        box = st.empty()
        text = box.write_stream(stream_answer(question, settings, final))
        if final.get("error"):
            st.error(final["error"])
            return
        if final.get("evidence"):  # the answer with its [n] markers replaces the streamed words
            text = final["evidence"]["content"]
            box.markdown(text)
        message = {"role": "assistant", "content": text if isinstance(text, str) else "", **final}
        history.append(message)
        show_sources(message, len(history) - 1)


def upload_page(settings: dict[str, Any]) -> None:
    st.title("Upload documents")
    st.write("PDF, Markdown or text. Before anything is stored, the personal data the server recognises "
             "(e-mail addresses, phone numbers, card, IBAN and national id numbers, IP addresses) is replaced "
             "by placeholders; recognition is by patterns and can miss some, and person names are only found "
             "when the server has a name model (each upload's result says). The original file is deleted once "
             f"ingested. Only you (user **{settings['user']}**) will find these in answers: tick *Only my "
             "uploads* to ask about them.")
    files = st.file_uploader("Files", type=["pdf", "md", "txt"], accept_multiple_files=True)
    if not (files and st.button("Upload and ingest")):
        return
    queued = []
    for f in files:  # all queued first: the server ingests them while this page follows each one
        response = api("POST", "/v1/uploads", files={"file": (f.name, f.getvalue())}, data={"user": settings["user"]})
        if response.status_code == 202:
            queued.append(response.json())
        else:
            st.error(f"{f.name}: {error_text(response)}")
    for job in queued:
        follow_upload(job, settings["user"])


def follow_upload(job: dict[str, Any], user: str) -> None:
    """Poll GET /v1/uploads/{id} and show its progress until the job ends, then its outcome."""
    line, bar = st.empty(), st.progress(0.0)
    deadline = time.monotonic() + UPLOAD_WAIT_S
    while job["status"] in ("queued", "running") and time.monotonic() < deadline:
        total, done = job.get("chunks_total"), job.get("chunks_done", 0)
        if job["status"] == "queued":
            line.info(f"{job['filename']}: queued")
        else:
            counted = f": {done} of {total} chunks embedded" if total else ""
            line.info(f"{job['filename']}: running ({job.get('stage') or 'starting'}){counted}")
            bar.progress(done / total if total else 0.0)
        time.sleep(0.5)
        response = api("GET", f"/v1/uploads/{job['id']}", params={"user": user})
        if response.status_code != 200:
            line.error(f"{job['filename']}: {error_text(response)}")
            return
        job = response.json()
    bar.empty()
    if job["status"] == "done":
        result = job["result"]
        if result["redacted"] is None:
            redacted = "redaction is off on this server"
        else:
            found = ", ".join(f"{k} {v}" for k, v in result["redacted"].items()) or "nothing found"
            redacted = f"redacted: {found}; person names: {result['person_names']}"
        line.success(f"stored {job['document_id']}: {result['chunks_written']} chunks written, {redacted}")
    elif job["status"] in ("failed", "cancelled"):
        line.error(f"{job['filename']}: {job['status']}: {job['reason']}")
    else:
        line.warning(f"{job['filename']}: still {job['status']} after {UPLOAD_WAIT_S:.0f} s; it goes on on the "
                     "server (this page stopped following it)")


def evaluation_page() -> None:
    st.title("Evaluation of the served model")
    response = api("GET", "/v1/report")
    if response.status_code != 200:
        st.info(error_text(response))
        return
    report = response.json()
    st.caption(f"{report['model']} · {report['path']}")
    st.table({"metric": list(report["overall"]), "value": [f"{v:.4f}" if isinstance(v, int | float) else v
                                                           for v in report["overall"].values()]})
    st.markdown(report["markdown"])


def main() -> None:
    st.set_page_config(page_title="promptly", page_icon="💬")
    page = st.sidebar.radio("Page", ["Chat", "Upload", "Evaluation"])
    settings = sidebar()
    if page == "Chat":
        chat_page(settings)
    elif page == "Upload":
        upload_page(settings)
    else:
        evaluation_page()


main()
