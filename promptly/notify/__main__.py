"""`python -m promptly.notify start|success|failure --title ...`: what workflows run to report a job
(Kaggle training, ingestion, bias reports) through the same channels as the training callback.

    python -m promptly.notify start --title "train smoke"
    python -m promptly.notify success --title "ingest" --result logs/ingest/gh/result.json
    python -m promptly.notify failure --title "bias report" --log-file job.log --error "step failed"

It always exits 0 once its arguments parse: a notification never fails the job it reports on.
Deliberately not a Hydra verb: it has no run folder, and it starts without importing torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from promptly.notify.channels import Retry, notify
from promptly.notify.jobs import LOG_TAIL_LINES
from promptly.notify.message import Event, Message
from promptly.utils.results import read_result

DETAILS_LIMIT = 60_000
"""Characters of --details-file kept (GitHub's step summary takes up to 1 MiB per step)."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m promptly.notify", description=__doc__.split("\n\n")[0])
    p.add_argument("event", choices=[e.value for e in Event])
    p.add_argument("--title", required=True, help="the job in a few words")
    p.add_argument("--text", default="", help="what happened, in a sentence")
    p.add_argument("--metric", action="append", default=[], metavar="NAME=VALUE", help="a headline number")
    p.add_argument("--result", type=Path, help="a run's result.json: its metrics, folder and error")
    p.add_argument("--run-dir", help="where the run's files are")
    p.add_argument("--url", help="a link to the run (default: the GitHub Actions run)")
    p.add_argument("--error", help="the failure reason")
    p.add_argument("--log-file", type=Path, help="a log whose last lines go with a failure")
    p.add_argument("--details-file", type=Path, help="Markdown for the step summary (a report's summary)")
    p.add_argument("--attempts", type=int, default=3)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    p.add_argument("--backoff", type=float, default=1.0, help="seconds before the first retry (then doubled)")
    return p


def _read(path: Path | None, limit: int) -> str | None:
    if path is None or not path.is_file():
        return None
    return path.read_text(encoding="utf-8", errors="replace")[-limit:]


def message_from_args(args: argparse.Namespace) -> Message:
    """The message the arguments describe; a missing --result or log file is left out, not an error
    (the step that should have written it is what failed)."""
    metrics: dict[str, float] = {}
    run_dir, error = args.run_dir, args.error
    if args.result is not None and args.result.is_file():
        result = read_result(args.result)
        first = [result.optimized_metric] if result.optimized_metric in result.metrics else []
        metrics.update({k: result.metrics[k] for k in [*first, *sorted(result.metrics)]})
        run_dir = run_dir or result.output_dir or None
        error = error or result.error
    for item in args.metric:
        name, sep, value = item.partition("=")
        try:
            metrics[name] = float(value) if sep else float("nan")
        except ValueError:
            print(f"notify: --metric {item!r} is not NAME=NUMBER; left out", file=sys.stderr)
    tail = _read(args.log_file, 20_000)
    return Message(Event(args.event), args.title, text=args.text, metrics=metrics, url=args.url, run_dir=run_dir,
                   error=error, log_tail="\n".join(tail.splitlines()[-LOG_TAIL_LINES:]) if tail else None,
                   details=_read(args.details_file, DETAILS_LIMIT))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    deliveries = notify(message_from_args(args), Retry(args.attempts, args.timeout, args.backoff))
    for d in deliveries:
        print(f"notify: {d.channel} {'delivered' if d.ok else 'NOT delivered: ' + (d.error or '')} "
              f"({d.attempts} attempt(s))", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
