"""`python -m promptly <verb> ...`: the same as the `promptly` command (promptly/verbs/cli.py)."""

from promptly.verbs.cli import main

if __name__ == "__main__":
    main()
