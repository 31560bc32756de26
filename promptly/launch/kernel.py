"""What a Kaggle kernel runs (notebooks/kaggle_job.ipynb calls these): read the secrets, ingest the attached
documents when the data comes as a dataset, `promptly train` with the job's overrides, `promptly eval`
when asked, everything written under ./job, the folder the launcher collects.

The same code runs locally: outside Kaggle the secrets are taken from the environment as they are, and
attached datasets are looked up under $PROMPTLY_KAGGLE_INPUT (default /kaggle/input).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

JOB_DIR = "job"
"""The kernel's run folder, relative to its working directory (/kaggle/working on Kaggle)."""
EVAL_DIR = "eval"
"""Where `promptly eval` writes, inside the run folder."""
INGEST_KEYS = ("store", "embedder", "ingest", "+store", "+embedder", "+ingest", "~store")


def read_secrets(names: list[str]) -> list[str]:
    """Put each Kaggle Secret into the environment variable of the same name; returns the names found.
    Values are never printed. Outside Kaggle (no kaggle_secrets module) the environment is used as is."""
    try:
        from kaggle_secrets import UserSecretsClient
    except ImportError:
        found = [n for n in names if os.environ.get(n)]
    else:
        client, found = UserSecretsClient(), []
        for name in names:
            try:
                value = client.get_secret(name)
            except Exception:  # not attached to this notebook: the job runs without it
                continue
            if value:
                os.environ[name] = value
                found.append(name)
    missing = sorted(set(names) - set(found))
    print(f"secrets: {', '.join(found) or 'none'}" + (f" (not set: {', '.join(missing)})" if missing else ""))
    return found


def input_dir(dataset: str) -> Path:
    """Where Kaggle mounted an attached dataset (owner/slug): /kaggle/input/<slug>, or the newer
    /kaggle/input/datasets/<owner>/<slug>."""
    root = Path(os.environ.get("PROMPTLY_KAGGLE_INPUT", "/kaggle/input"))
    owner, slug = dataset.split("/", 1)
    for path in (root / slug, root / "datasets" / owner / slug):
        if path.is_dir():
            return path
    raise FileNotFoundError(f"dataset {dataset} is not attached: not under {root}")


def promptly(verb: str, args: list[str], env: dict[str, str]) -> int:
    """One promptly command in a subprocess, its output printed line by line (it lands in the kernel log)."""
    cmd = [sys.executable, "-m", "promptly", verb, *args]
    print("$ promptly", verb, " ".join(args), flush=True)
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
    return proc.returncode


def run_job(job: dict[str, Any], workdir: Path | None = None) -> Path:
    """Train (and evaluate) one job into <workdir>/job; raises when a step fails, so the kernel fails."""
    out = (workdir or Path.cwd()) / JOB_DIR
    home = os.environ.get("PROMPTLY_HOME") or tempfile.mkdtemp(prefix="promptly-home-")
    env = {**os.environ, "PROMPTLY_HOME": home, "PYTHONUNBUFFERED": "1"}
    overrides = [str(o) for o in job.get("overrides", [])]
    located: list[str] = []
    if job.get("data_dataset"):
        located.append(f"paths.data_dir={input_dir(str(job['data_dataset']))}")
        store_args = [o for o in overrides if o.startswith(INGEST_KEYS)]
        if promptly("ingest", [*store_args, *located], env):
            raise RuntimeError("promptly ingest failed (see above)")
    code = promptly("train", [*overrides, *located, f"hydra.run.dir={out}"], env)
    if code:
        raise RuntimeError(f"promptly train failed with exit status {code} (see above; {out}/result.json)")
    if job.get("eval"):
        store_args = [o for o in overrides if o.startswith(INGEST_KEYS)]
        if promptly("eval", [f"run_dir={out}", *store_args, *located, f"hydra.run.dir={out / EVAL_DIR}"], env):
            raise RuntimeError("promptly eval failed (see above)")
    return out
