"""`promptly ui`: the Streamlit app (promptly/serving/ui.py) pointed at a running `promptly serve`.

    promptly ui ui.api_url=http://127.0.0.1:8000 ui.port=8501
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from promptly.errors import PromptlyError
from promptly.verbs.entry import hydra_entry
from promptly.verbs.task_wrapper import TaskOutput

APP = Path(__file__).resolve().parents[1] / "serving" / "ui.py"
ENV_PREFIX = "PROMPTLY_UI_"
"""The app reads its settings from PROMPTLY_UI_API_URL, ..._K, ..._TIMEOUT_S, ..._API_KEY_ENV."""


def command(cfg: DictConfig) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless=true",
            f"--server.address={cfg.ui.host}", f"--server.port={int(cfg.ui.port)}",
            "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"]


def environment(cfg: DictConfig) -> dict[str, str]:
    return {**os.environ, f"{ENV_PREFIX}API_URL": str(cfg.ui.api_url), f"{ENV_PREFIX}K": str(cfg.ui.k),
            f"{ENV_PREFIX}TIMEOUT_S": str(cfg.ui.timeout_s), f"{ENV_PREFIX}API_KEY_ENV": str(cfg.ui.api_key_env or "")}


def run(cfg: DictConfig) -> int:
    """Run Streamlit until stopped; with ui.check, until its health check answers, then stop it."""
    if not cfg.ui.check:
        print(f"promptly ui: http://{cfg.ui.host}:{cfg.ui.port} (API {cfg.ui.api_url})", flush=True)
        return subprocess.call(command(cfg), env=environment(cfg))
    import httpx

    proc = subprocess.Popen(command(cfg), env=environment(cfg), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://{cfg.ui.host}:{cfg.ui.port}/_stcore/health", timeout=2).status_code == 200:
                    print(f"promptly ui: ready on http://{cfg.ui.host}:{cfg.ui.port}", flush=True)
                    return 0
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise PromptlyError(f"the UI did not start on {cfg.ui.host}:{cfg.ui.port}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def task(cfg: DictConfig) -> TaskOutput:
    return {}, {"exit_code": run(cfg)}


main = hydra_entry("ui", run_folder=False)(task)
