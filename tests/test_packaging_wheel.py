"""promptly as a user (or a Kaggle kernel) gets it: a wheel built with `python -m build` (sdist, then the
wheel from the sdist), installed into a fresh venv, run from an empty folder with no PYTHONPATH and no
checkout in sight: every config ships byte for byte, each entry config composes, Hydra finds the Kaggle
launcher plugin, and `promptly ingest` + `promptly train experiment=smoke` run on the sample corpus shipped
in the wheel.

To save the dependencies' download and install time, the fresh venv sees the project venv's
site-packages through a .pth file (only the dependencies come from there: `pip install --no-deps
--ignore-installed` puts the wheel's promptly and its plugin in the fresh venv, ahead on sys.path, and
the project venv's editable install is neither used nor touched).
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

COMPOSE_ALL = r"""
import os
import sys
from pathlib import Path
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
import promptly
from promptly.verbs.entry import config_dir
import promptly.verbs.schemas  # noqa: F401

root, repo = config_dir(), Path(sys.argv[1])
assert root.resolve().is_relative_to(Path(sys.prefix).resolve()), (root, sys.prefix)  # the installed copy
def yaml_files(top):
    return {(Path(d) / f).relative_to(top).as_posix(): (Path(d) / f).read_bytes()
            for d, _, files in os.walk(top, followlinks=True) for f in files if f.endswith(".yaml")}
shipped, source = yaml_files(root), yaml_files(repo)  # the checkout's experiment/ is a link to experiments/
assert shipped == source, sorted(set(shipped) ^ set(source)) or [k for k in shipped if shipped[k] != source[k]]
# Every one of these files composes and instantiates from the checkout (tests/test_configs.py); from the
# installed copy, each entry config composes, with an experiment and the launcher plugin's config.
cases = [(p.stem, []) for p in root.glob("*.yaml")] + [("train", ["experiment=smoke", "hydra/launcher=kaggle"])]
for entry, overrides in cases:
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(root), version_base="1.3"):
        compose(entry, overrides, return_hydra_config=True)
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
launchers = {c.__name__: c.__module__ for c in Plugins.instance().discover(Launcher)}
print("shipped", len(shipped), "composed", len(cases), "launcher", launchers["KaggleLauncher"], "package",
      promptly.__file__)
"""


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (cmd, proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


@pytest.mark.slow
def test_the_wheel_composes_finds_its_plugin_and_trains_from_an_empty_folder(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROMPTLY_HOME", "PROMPTLY_CONFIG_DIR")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true")
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(REPO_ROOT)], tmp_path, env)
    (wheel,) = dist.glob("promptly-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"promptly/_configs/train.yaml", "promptly/_configs/experiment/smoke.yaml", "promptly/_sample_data/qa.jsonl",
            "promptly/_notebooks/kaggle_job.ipynb", "hydra_plugins/promptly_kaggle_launcher/kaggle_launcher.py",
            "promptly/store/migrations/0001_schema.sql"} <= names or sorted(names)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    (purelib,) = (venv / "lib").glob("python3*/site-packages")
    (purelib / "project_deps.pth").write_text(site.getsitepackages()[0] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps",
          "--ignore-installed", "--no-warn-conflicts", str(wheel)], tmp_path, env)

    work = tmp_path / "elsewhere"  # no configs/, no sample_data/, no checkout
    work.mkdir()
    composed = _run([str(venv / "bin" / "python"), "-c", COMPOSE_ALL, str(REPO_ROOT / "configs")], work, env).stdout
    assert "launcher hydra_plugins.promptly_kaggle_launcher.kaggle_launcher" in composed, composed
    assert f"package {purelib}" in composed, composed

    promptly = str(venv / "bin" / "promptly")
    _run([promptly, "ingest", "ingest.progress=false"], work, env)
    _run([promptly, "train", "experiment=smoke", "trainer.max_epochs=1", "logger=csv",
          "trainer.enable_progress_bar=false", "data.limit.train=16", "data.limit.validation=4",
          "data.limit.test=0"], work, env)
    (result,) = work.glob("logs/train/runs/*/result.json")
    assert '"status": "ok"' in result.read_text()
    assert list(result.parent.glob("checkpoints/*.ckpt"))
