"""Several `promptly <verb> ...` command lines, each run in a process of its own, at the cost of one start-up.

A test that runs many verbs through the real CLI pays torch + transformers + Lightning + Hydra imports (~5 s
of CPU) once per verb. Here one driver process imports the verbs' modules once and then forks one child per
command line; the child runs `promptly.verbs.cli.main` exactly as `python -m promptly` would (same argv, same
environment, its own stdout/stderr and exit code, its atexit handlers on exit), so no state from one verb's
run reaches the next: each child starts from the driver's freshly imported, never-run state.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

DRIVER = r"""
import importlib, json, os, sys
from pathlib import Path

commands, outdir = json.loads(sys.argv[1]), Path(sys.argv[2])
changes, dirs = json.loads(sys.argv[3]), json.loads(sys.argv[4])
from promptly.utils.log_setup import quiet_libraries

quiet_libraries(False)  # what `promptly` does first (no -v): before the libraries it quiets are imported
import promptly
from promptly.verbs.cli import VERBS, main

for name in {args[0] for args in commands if args and args[0] in VERBS}:  # only the verbs that will run
    importlib.import_module(VERBS[name].module)
program = str(Path(promptly.__file__).parent / "__main__.py")  # sys.argv[0] of `python -m promptly`
codes = []
for i, args in enumerate(commands):
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        for fd, stream in ((1, "out"), (2, "err")):
            target = os.open(outdir / f"{i}.{stream}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        for key, value in changes[i].items():  # this command's own environment
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        os.chdir(dirs[i])
        sys.argv = [program, *args]
        main()  # its SystemExit (or an uncaught error) ends this child like the end of a real process
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    codes.append(os.waitstatus_to_exitcode(status))
(outdir / "codes.json").write_text(json.dumps(codes))
"""


def run_promptly_many(commands: Sequence[Sequence[str]], cwd: Path, env: dict[str, str], out_dir: Path,
                      timeout: int = 1800, env_changes: Sequence[Mapping[str, str | None]] | None = None,
                      cwds: Sequence[Path] | None = None) -> tuple[list[subprocess.CompletedProcess[str]], str]:
    """Run each `promptly <args>` in order; returns one CompletedProcess per command line (its own exit code,
    stdout, stderr) and whatever the driver itself printed.

    `env_changes[i]` (None: unset) and `cwds[i]` apply to command i only, in its child before it starts: only
    for variables that nothing the driver imports reads at import time (credentials read when a client is
    made, not HF_HUB_OFFLINE); give such variables in `env`, which the driver itself starts with."""
    out_dir.mkdir(parents=True, exist_ok=True)
    changes = [dict(c) for c in env_changes] if env_changes is not None else [{} for _ in commands]
    dirs = [str(d) for d in cwds] if cwds is not None else [str(cwd) for _ in commands]
    assert len(changes) == len(dirs) == len(commands)
    driver = subprocess.run([sys.executable, "-c", DRIVER, json.dumps([list(c) for c in commands]), str(out_dir),
                             json.dumps(changes), json.dumps(dirs)],
                            cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert driver.returncode == 0, driver.stderr[-3000:]
    codes = json.loads((out_dir / "codes.json").read_text())
    results = [subprocess.CompletedProcess(["promptly", *args], codes[i], (out_dir / f"{i}.out").read_text(),
                                           (out_dir / f"{i}.err").read_text())
               for i, args in enumerate(commands)]
    return results, driver.stdout + driver.stderr
