"""Copy the pages of a Debian documentation package into one folder that `promptly ingest` reads.

Debian gzips the larger pages of a package's documentation (`user_guide.rst.gz`), and ingest reads plain
files only, so the pages listed in a pages file (benchmarks/data/<corpus>_pages.txt: one relative path a
line, `#` comments) are copied from the package's folder, gunzipped where Debian compressed them. A page
that is missing is an error naming it: a different package version would change the corpus silently.

    python benchmarks/byod_prepare.py --pages benchmarks/data/pip_docs_pages.txt \
        --source /usr/share/doc/python3-pip/html --out /tmp/promptly-byod/docs
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
from pathlib import Path


def read_pages(pages_file: Path) -> list[str]:
    """The relative page paths of a pages file (comments and blank lines skipped)."""
    lines = (line.strip() for line in pages_file.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def prepare(pages: list[str], source: Path, out: Path) -> list[str]:
    """Copy each page from `source` (or its `.gz` twin, gunzipped) to the same relative path under `out`;
    returns the pages that exist in neither form."""
    missing = []
    for rel in pages:
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        plain, packed = source / rel, source / f"{rel}.gz"
        if plain.is_file():
            shutil.copyfile(plain, target)
        elif packed.is_file():
            with gzip.open(packed, "rb") as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            missing.append(rel)
    return missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=Path, required=True, help="the pages file")
    parser.add_argument("--source", type=Path, required=True, help="the package's documentation folder")
    parser.add_argument("--out", type=Path, required=True, help="the folder to ingest")
    args = parser.parse_args()
    pages = read_pages(args.pages)
    missing = prepare(pages, args.source, args.out)
    if missing:
        sys.exit(f"{len(missing)} pages of {args.pages} are not under {args.source} (another package version?): "
                 + ", ".join(missing[:5]))
    print(f"{len(pages)} pages in {args.out}")


if __name__ == "__main__":
    main()
