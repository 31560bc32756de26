"""One `promptly` command: `promptly <verb> [hydra overrides]`; each verb is a Hydra entry point."""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

from promptly.utils.overrides import quote


@dataclass(frozen=True)
class Verb:
    module: str
    summary: str
    actions: tuple[str, ...] = ()
    """Positional sub-commands (`promptly db migrate`), passed to the entry config as `action=...`."""
    positional: str | None = None
    """The config key a free-text first argument sets (`promptly ask "QUESTION"` sets `question`)."""


VERBS: dict[str, Verb] = {
    "ingest": Verb("promptly.verbs.ingest", "chunk, embed and store a document source (incremental)"),
    "db": Verb("promptly.verbs.db", "migrate | status | sql | stop: the store's schema and contents; stop "
               "the embedded server", ("migrate", "status", "sql", "stop")),
    "train": Verb("promptly.verbs.train", "fine-tune a model on the store's QA pairs or chunks (Lightning + Hydra)"),
    "eval": Verb("promptly.verbs.eval", "answer the test split with retrieval; BLEU, ROUGE, perplexity, "
                 "RAG metrics; report.md + plots"),
    "runs": Verb("promptly.verbs.runs", "list the runs of a folder or multirun with overrides and final metrics"),
    "qa": Verb("promptly.verbs.qa", "generate | export: synthetic QA pairs from chunks; disliked conversations",
               ("generate", "export")),
    "publish": Verb("promptly.verbs.publish", "push | list | promote | rollback: versioned models, local or Hub",
                    ("push", "list", "promote", "rollback")),
    "ask": Verb("promptly.verbs.ask", "answer one question with retrieved context and numbered citations",
                positional="question"),
    "bias": Verb("promptly.verbs.bias", "report | calibrate: counterfactual probes graded on a fairness "
                 "rubric by a judge measured first on BBQ pairs; data balance; bias_report.md + plots",
                 ("report", "calibrate")),
    "serve": Verb("promptly.verbs.serve",
                  "the OpenAI-compatible RAG API: citations, streaming, uploads, /metrics"),
    "ui": Verb("promptly.verbs.ui", "the Streamlit chat (sources, feedback), upload and evaluation pages"),
    "launch": Verb("promptly.verbs.launch", "status | pull: the Kaggle kernels of a sweep launched with "
                   "hydra/launcher=kaggle", ("status", "pull")),
}

VERBOSE_FLAGS = ("-v", "--verbose")
LOG_LEVEL_ENV = "PROMPTLY_LOG_LEVEL"  # read by configs/hydra/job_logging (the console handler's level)
VERB_ENV = "PROMPTLY_VERB"  # the verb of this process, for the ranks Lightning re-launches

USAGE = """usage: promptly [-v] <verb> [override ...] [-m] [--help]

Every verb is a Hydra app on the config tree in configs/: pass overrides such as
store=postgres store.url=postgresql://... or -m for a multirun; `promptly <verb> --help`
shows that verb's config groups and options. -v (anywhere) shows INFO logs and progress bars.

verbs:
{verbs}
"""


def usage() -> str:
    width = max(len(v) for v in VERBS)
    lines = [f"  {name.ljust(width)}  {verb.summary}" for name, verb in VERBS.items()]
    return USAGE.format(verbs="\n".join(lines))


def _relaunched_rank() -> bool:
    """A process Lightning started for another rank of a `promptly <verb>` run."""
    return bool(os.environ.get(VERB_ENV)) and any(os.environ.get(k) for k in ("LOCAL_RANK", "NODE_RANK"))


def _is_override(arg: str) -> bool:
    """`key=value`, `+key=value`, `~key` or a flag: what Hydra reads; anything else is free text."""
    if arg.startswith("-") or arg.startswith("~"):
        return True
    key, sep, _ = arg.partition("=")
    return bool(sep) and bool(re.fullmatch(r"\+{0,2}[\w./@-]+", key))


def exit_cleanly_on_termination() -> None:
    """SIGTERM and SIGHUP end the process as SystemExit, so `finally` blocks and exit handlers run: open
    transactions roll back and the embedded Postgres is stopped when its last user goes (SIGINT already
    raises KeyboardInterrupt). Handlers installed later (uvicorn's, Lightning's) take over while they run."""
    import signal

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) in (signal.SIG_DFL, None):
            try:
                signal.signal(sig, terminate)
            except ValueError:  # not the main thread (main() called from a thread): nothing to install
                return


def main(argv: list[str] | None = None) -> None:
    exit_cleanly_on_termination()
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in VERBOSE_FLAGS for a in args)
    args = [a for a in args if a not in VERBOSE_FLAGS]
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        raise SystemExit(0 if args else 2)
    if args[0] not in VERBS and _relaunched_rank():
        args = [os.environ[VERB_ENV], *args]  # Lightning re-runs our command line for the other ranks
    name, rest = args[0], args[1:]
    verb = VERBS.get(name)
    if verb is None:
        print(f"promptly: unknown verb {name!r}\n", file=sys.stderr)
        print(usage(), file=sys.stderr)
        raise SystemExit(2)
    if verb.positional and rest and not _is_override(rest[0]):
        rest = [f"{verb.positional}={quote(rest[0])}", *rest[1:]]
    elif verb.actions and rest and rest[0] in verb.actions:
        rest = [f"action={rest[0]}", *rest[1:]]
    elif verb.actions and rest and not rest[0].startswith("-") and "=" not in rest[0]:
        print(f"promptly {name}: unknown action {rest[0]!r}; choose one of {', '.join(verb.actions)}",
              file=sys.stderr)
        raise SystemExit(2)
    # Hydra reads the overrides from sys.argv. argv[0] stays the real program, and the verb travels in the
    # environment: Lightning's DDP launcher re-runs `python argv[0] argv[1:]` for ranks 1..n-1.
    sys.argv = [sys.argv[0], *rest]
    os.environ[VERB_ENV] = name
    if verbose:
        os.environ[LOG_LEVEL_ENV] = "INFO"
    from promptly.utils.log_setup import quiet_libraries

    quiet_libraries(verbose or os.environ.get(LOG_LEVEL_ENV, "").upper() in ("INFO", "DEBUG"))
    entry = importlib.import_module(verb.module)
    run_entry(entry.main)


def run_entry(entry_main: Callable[[], object]) -> None:
    """Run a verb's Hydra entry with its errors raised to here rather than printed by Hydra, so a config
    mistake is one line naming the nearest valid keys (promptly/verbs/config_errors.py) and a user error
    one red line. HYDRA_FULL_ERROR=1 set by the user keeps every traceback, as in Hydra."""
    from rich.console import Console
    from rich.markup import escape

    from promptly.errors import PromptlyError
    from promptly.utils.redact import redact_text
    from promptly.verbs.config_errors import explain
    from promptly.verbs.entry import CLI_RAISES_ENV

    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        entry_main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing (read when it catches)
    os.environ[CLI_RAISES_ENV] = "1"
    try:
        entry_main()
    except Exception as err:  # a PromptlyError here came from a multirun job (the entry prints single runs)
        message = redact_text(str(err)) if isinstance(err, PromptlyError) else explain(err)
        if message is None:
            raise
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")
        raise SystemExit(1) from None
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)
        os.environ.pop(CLI_RAISES_ENV, None)


if __name__ == "__main__":
    main()
