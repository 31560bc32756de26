"""The Streamlit UI in a real headless Chromium (Debian's `chromium` + `chromium-driver`, installed here
with apt-get when missing and possible), driven by Selenium against `promptly ui` talking to a running
`promptly serve`: ask a question and see the streamed answer and its sources; upload a file, follow its
job to the end (what was redacted in it), and find it cited when chatting about one's own uploads."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .cloud.promptly_server import ServeThread
from .serve_fixtures import QUESTION, serve_cfg, serve_db  # noqa: F401  (a fixture)

pytestmark = pytest.mark.slow

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def ensure_chromium() -> None:
    """Install Debian's chromium and chromium-driver when missing (root with apt-get, as in CI), else skip."""
    if Path(CHROMIUM).is_file() and Path(DRIVER).is_file():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver")
    result = subprocess.run(["apt-get", "install", "-y", "chromium", "chromium-driver"], capture_output=True,
                            text=True, timeout=900, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if result.returncode != 0 or not Path(DRIVER).is_file():
        pytest.skip(f"apt-get could not install chromium: {result.stderr[-500:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, serve_db: str) -> Iterator[ServeThread]:  # noqa: F811
    with ServeThread(serve_cfg(tmp_path_factory.mktemp("ui-serve"), serve_db)) as server:
        yield server


@pytest.fixture(scope="module")
def ui(api: ServeThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "promptly", "ui", f"ui.api_url={api.url}", f"ui.port={port}"],
                            cwd=tmp_path_factory.mktemp("ui"), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "promptly ui did not start"
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the CLI and the Streamlit process it started
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def wait_for_text(driver, text: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: text in d.find_element(By.TAG_NAME, "body").text,
                                         message=f"{text!r} never appeared")


def ask(driver, question: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    box = WebDriverWait(driver, 60).until(ec.element_to_be_clickable(
        (By.CSS_SELECTOR, "textarea[data-testid='stChatInputTextArea']")))
    box.send_keys(question)
    box.send_keys(Keys.ENTER)


def click_label(driver, text: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(ec.element_to_be_clickable(
        (By.XPATH, f"//label[.//p[normalize-space()='{text}']]"))).click()


def test_ask_and_see_the_answer_and_its_sources(api: ServeThread, ui: str, browser) -> None:  # type: ignore[no-untyped-def]
    expected = httpx.post(f"{api.url}/v1/retrieve", json={"query": QUESTION, "k": 3}).json()["data"]
    browser.get(ui)
    wait_for_text(browser, "model: tiny")
    ask(browser, QUESTION)
    wait_for_text(browser, "Sources")
    for c in expected:
        wait_for_text(browser, f"[{c['number']}] {c['title']}")
    wait_for_text(browser, "“A repository can hold at most 16")  # the supporting sentence, quoted under its source
    wait_for_text(browser, "answered by tiny")


def test_upload_a_file_and_find_it_cited(api: ServeThread, ui: str, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    note = tmp_path / "heron-notes.md"
    note.write_text("# Heron cluster notes\n\nThe heron cluster rotates its TLS certificates every 41 days. "
                    "Questions go to ops-lead@corp-mail.net.\n")
    browser.get(ui)
    click_label(browser, "Upload")
    WebDriverWait(browser, 30).until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, "input[type='file']"))).send_keys(str(note))
    wait_for_text(browser, "heron-notes.md")
    WebDriverWait(browser, 30).until(ec.element_to_be_clickable(
        (By.XPATH, "//button[.//p[normalize-space()='Upload and ingest']]"))).click()
    wait_for_text(browser, "stored uploads/guest/heron-notes.md")  # the job followed to its end
    wait_for_text(browser, "redacted: EMAIL_ADDRESS 1; person names:")  # what was found in this file
    click_label(browser, "Chat")
    click_label(browser, "Only my uploads")
    ask(browser, "How often does the heron cluster rotate its certificates?")
    wait_for_text(browser, "[1] Heron cluster notes")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "ops-lead@corp-mail.net" not in body  # redacted at ingest
