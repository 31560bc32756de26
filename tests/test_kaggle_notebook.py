"""Every notebook in notebooks/ executed with nbclient on the tiny configs.

The kernel notebook is rendered for a job exactly as the launcher renders it (documents attached as a
dataset, ingested inside the kernel into its embedded store), executed in a working folder of its own,
and must produce exactly what the launcher collects: a ./job run folder and nothing else, which
`lay_out` turns into a local job folder holding the same files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from promptly.launch.bundle import TEMPLATE, KernelJob, render
from promptly.launch.kernel import JOB_DIR
from promptly.launch.sweep import lay_out
from promptly.utils.results import RunResult, read_result, write_result

from .conftest import REPO_ROOT

TINY = ["model=tiny", "trainer=cpu", "logger=csv", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "model.tiny.num_hidden_layers=2", "data.max_length=160",
        "data.retrieval.k=1", "data.limit.train=16", "data.limit.validation=4", "data.limit.test=0",
        "trainer.max_epochs=1", "module.samples=2", "module.max_new_tokens=8", "export=false"]
PRODUCT = "quillmq"


def execute(nb: nbformat.NotebookNode, cwd: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute(env=env)
    return nb


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_the_rendered_kernel_notebook_produces_what_the_launcher_collects(tmp_path: Path) -> None:
    inputs, work, home = tmp_path / "input", tmp_path / "working", tmp_path / "home"
    inputs.mkdir()
    work.mkdir()
    dataset = inputs / "sample-docs"  # one product of the sample corpus (a short ingest) and its QA pairs
    shutil.copytree(REPO_ROOT / "sample_data" / "docs" / PRODUCT, dataset / "docs" / PRODUCT)
    pairs = (REPO_ROOT / "sample_data" / "qa.jsonl").read_text().splitlines(keepends=True)
    (dataset / "qa.jsonl").write_text("".join(p for p in pairs if f'"document_id": "{PRODUCT}/' in p))
    env = {**os.environ, "PROMPTLY_KAGGLE_INPUT": str(inputs), "PROMPTLY_HOME": str(home), "WANDB_MODE": "offline"}
    job = KernelJob(ref="tester/promptly-nb-0", install=[], secrets=["WANDB_API_KEY"],
                    overrides=[*TINY, "data.validation_split=train"],  # one product: too few documents to split
                    data_dataset="tester/sample-docs")
    nb = execute(nbformat.from_dict(render(job)), work, env)

    out = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "$ promptly ingest" in out and "$ promptly train" in out
    assert {p.name for p in work.iterdir()} == {JOB_DIR}  # nothing the launcher would leave behind
    produced = _files(work / JOB_DIR)
    assert {"result.json", "config.yaml", "train.log"} <= produced
    assert any(p.startswith("checkpoints/") for p in produced)
    assert read_result(work / JOB_DIR / "result.json").status == "ok"

    job_dir = tmp_path / "sweep" / "0"
    result = lay_out(work, "promptly-nb-0", job_dir, 0)
    assert result is not None and result.status == "ok" and result.output_dir == str(job_dir)
    assert _files(job_dir) == produced  # exactly the kernel's outputs, in the local job folder
    assert result.best_model_path and Path(result.best_model_path).is_file()


@pytest.mark.slow
def test_the_exploration_notebook_reads_a_store_and_compares_runs(ingested_url: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for num, loss in enumerate([2.5, 1.25]):
        write_result(runs / str(num), RunResult(status="ok", metrics={"val/loss": loss, "val/ppl": 3.0 + num}))
    nb = nbformat.read(REPO_ROOT / "notebooks" / "explore.ipynb", as_version=4)
    (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    params.source = f"STORE_URL = {ingested_url!r}\nSTATE_DIR = None\nRUNS_DIR = {str(runs)!r}\nQUERY = 'retention'"
    nb = execute(nb, tmp_path, dict(os.environ))
    out = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "40 documents" in out and "Q: " in out
    assert "val/loss" in out and "1.25" in out and "2.5" in out


def test_the_kernel_template_is_thin_and_has_one_parameters_cell() -> None:
    nb = nbformat.read(TEMPLATE, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) <= 4 and sum(len(c.source.splitlines()) for c in code) <= 15
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
