"""Several `promptly <verb> ...` command lines, each run in a process of its own, at the cost of one start-up.

A test that runs many verbs through the real CLI pays torch + transformers + Lightning + Hydra imports (~5 s
of CPU) once per verb. Here one driver process imports the verbs' modules once and then forks one child per
command line; the child runs `promptly.verbs.cli.main` exactly as `python -m promptly` would (same argv, same
environment, its own stdout/stderr and exit code; on exit its threads joined, its atexit handlers run and its
streams flushed), so no state from one verb's run reaches the next: each child starts from the driver's
freshly imported, never-run state. Two things keep a child cheap: the driver freezes its imported objects out
of the garbage collector's reach before forking (`gc.freeze`), and a child ends with `os._exit` after the
steps above instead of tearing its modules down; both only avoid writing to memory the child shares with the
driver (each write copies a page: ~1.2 s a command before, measured on `promptly --help`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

SERVER = r"""
import atexit, gc, importlib, json, os, sys, threading
from pathlib import Path

replies = os.fdopen(int(sys.argv[1]), "w", buffering=1)
base = dict(os.environ)  # the environment this driver started with: each command's changes are against it
from promptly.utils.log_setup import quiet_libraries

quiet_libraries(False)  # what `promptly` does first (no -v): before the libraries it quiets are imported
import promptly
from promptly.verbs.cli import VERBS, main

for name in VERBS:
    importlib.import_module(VERBS[name].module)
# Libraries the verbs import only when they run (a model's code, the embedder, the API's clients): a process
# pays for them once, so the driver does too, instead of every forked command again. Not W&B: its import makes
# a temporary folder that the first command's exit would delete under the next one.
for name in ("transformers.models.llama.modeling_llama", "peft", "sentence_transformers", "openai", "fastapi"):
    importlib.import_module(name)
program = str(Path(promptly.__file__).parent / "__main__.py")  # sys.argv[0] of `python -m promptly`
sys.stdout.flush()
sys.stderr.flush()
replies.write(json.dumps({"ready": True}) + "\n")
for line in sys.stdin:
    job = json.loads(line)
    # The imported modules move to GC's permanent generation: a child's collections and its exit then leave
    # them alone instead of touching (and so copying) every page the driver shares with it (~1 s a command).
    gc.freeze()
    pid = os.fork()
    if pid == 0:
        replies.close()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, stream in ((1, "out"), (2, "err")):
            target = os.open(job["out"] + "." + stream, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        for key in set(base) - set(job["env"]):
            os.environ.pop(key, None)
        os.environ.update({k: v for k, v in job["env"].items() if base.get(k) != v})
        # as a new interpreter would: PYTHONPATH's folders right after the script's own entry on sys.path
        sys.path[1:1] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
        os.chdir(job["cwd"])
        sys.argv = [job["argv0"] or program, *job["args"]]
        try:
            main()
            code = 0
        except SystemExit as stop:  # as the interpreter turns it into an exit status
            if stop.code is None or isinstance(stop.code, int):
                code = stop.code or 0
            else:
                print(stop.code, file=sys.stderr)
                code = 1
        except BaseException:
            sys.excepthook(*sys.exc_info())
            code = 1
        # What an exiting interpreter does that a command can observe (non-daemon threads joined, atexit
        # handlers run, garbage with finalizers collected, streams flushed), but not the teardown of the modules
        # it shares with the driver: that writes to every page of them and costs ~0.3 s of copying a command.
        threading._shutdown()
        atexit._run_exitfuncs()
        gc.collect()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code & 0xFF)
    replies.write(json.dumps({"pid": pid}) + "\n")
    _, status = os.waitpid(pid, 0)
    replies.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
"""


class PromptlyRunner:
    """`promptly <args>` command lines run one after another, each in a process of its own forked from one
    long-lived driver that imported every verb once (as `run_promptly_many`, but a command at a time, so
    tests can run commands between their own steps).

    Each command gets the environment it is given (its differences from the driver's starting environment
    applied in the child before it starts: only for variables nothing imports reads at import time; the
    folders of its PYTHONPATH are put on sys.path, as a new interpreter would), its
    working folder, its own stdout/stderr and exit code. Whatever the driver printed while importing (what a
    fresh `promptly` process would print before its verb runs) is put in front of each command's stderr."""

    def __init__(self, out_dir: Path, env: Mapping[str, str] | None = None) -> None:
        import os

        self.out_dir, self.count = out_dir, 0
        out_dir.mkdir(parents=True, exist_ok=True)
        read_fd, write_fd = os.pipe()
        self._log = (out_dir / "driver.log").open("w")
        self._proc = subprocess.Popen([sys.executable, "-c", SERVER, str(write_fd)], stdin=subprocess.PIPE,
                                      stdout=self._log, stderr=subprocess.STDOUT, pass_fds=(write_fd,),
                                      env=dict(env) if env is not None else None, text=True)
        os.close(write_fd)
        self._replies = os.fdopen(read_fd, "r")
        self._reply(timeout=600)  # ready: every verb imported
        self._log.flush()
        self.preamble = (out_dir / "driver.log").read_text()

    def _reply(self, timeout: float) -> dict[str, int]:
        import selectors

        with selectors.DefaultSelector() as selector:
            selector.register(self._replies, selectors.EVENT_READ)
            if not selector.select(timeout):
                raise subprocess.TimeoutExpired("promptly driver", timeout)
        line = self._replies.readline()
        if not line:
            raise RuntimeError(f"the promptly driver exited: {(self.out_dir / 'driver.log').read_text()[-3000:]}")
        return json.loads(line)

    def run(self, args: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float = 600,
            argv0: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `promptly <args>` in `cwd` with exactly `env`, as `subprocess.run(..., capture_output=True)`.
        `argv0`: the program's sys.argv[0] (default: promptly's __main__.py, as `python -m promptly` has it; the
        path of the `promptly` console script makes it the command a user types)."""
        import os
        import signal

        self.count += 1
        out = self.out_dir / str(self.count)
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"args": list(args), "cwd": str(cwd), "env": dict(env),
                                           "out": str(out), "argv0": argv0}) + "\n")
        self._proc.stdin.flush()
        pid = self._reply(timeout=60)["pid"]
        try:
            code = self._reply(timeout=timeout)["code"]
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            self._reply(timeout=60)
            raise subprocess.TimeoutExpired(["promptly", *args], timeout) from None
        stdout = Path(f"{out}.out").read_text()
        stderr = Path(f"{out}.err").read_text()
        return subprocess.CompletedProcess(["promptly", *args], code, stdout, self.preamble + stderr)

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=60)
        self._replies.close()
        self._log.close()


def run_promptly_many(commands: Sequence[Sequence[str]], cwd: Path, env: dict[str, str], out_dir: Path,
                      timeout: int = 1800, env_changes: Sequence[Mapping[str, str | None]] | None = None,
                      cwds: Sequence[Path] | None = None) -> tuple[list[subprocess.CompletedProcess[str]], str]:
    """Run each `promptly <args>` in order from a driver of their own that starts with `env` (so whatever it
    reads at import time sees that environment); returns one CompletedProcess per command line (its own
    exit code, stdout, stderr) and whatever the driver itself printed while importing.

    `env_changes[i]` (None: unset) and `cwds[i]` apply to command i only (see PromptlyRunner)."""
    changes = [dict(c) for c in env_changes] if env_changes is not None else [{} for _ in commands]
    dirs = list(cwds) if cwds is not None else [cwd for _ in commands]
    assert len(changes) == len(dirs) == len(commands)
    runner = PromptlyRunner(out_dir, env)
    try:
        results = []
        for args, change, folder in zip(commands, changes, dirs, strict=True):
            command_env = {**env, **{k: v for k, v in change.items() if v is not None}}
            for key in [k for k, v in change.items() if v is None]:
                command_env.pop(key, None)
            results.append(runner.run(args, folder, command_env, timeout=timeout))
    finally:
        runner.close()
    return results, runner.preamble


_shared: PromptlyRunner | None = None


def shared_runner() -> PromptlyRunner:
    """The session's one runner, started on first use (from the test session's environment) and closed by
    `close_shared_runner` at the end of the session (tests/conftest.py)."""
    global _shared
    if _shared is None:
        import tempfile

        _shared = PromptlyRunner(Path(tempfile.mkdtemp(prefix="promptly-runner-")))
    return _shared


def close_shared_runner() -> None:
    global _shared
    if _shared is not None:
        _shared.close()
        _shared = None
