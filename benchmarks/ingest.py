"""Ingest throughput and incremental re-ingest, on the sample corpus and on one 20 times larger.

Baseline (measured in the same run): the first ingest of each corpus. Printed per corpus:
chunks per second on the first ingest, seconds for re-ingesting the unchanged corpus, and
their ratio (first-ingest seconds / re-ingest seconds). The last line is
`reingest_speedup=<ratio>` for the larger corpus; the target is >= 20.

Both runs go through the same code as `promptly ingest` (load, hash, diff, chunk, embed, store)
on a fresh embedded PostgreSQL; the embedder is loaded before timing starts, as it is once per
process in the CLI.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
from pathlib import Path

from promptly.ingest.chunking import TokenChunker
from promptly.ingest.documents import SourceConfig, load_source
from promptly.ingest.embedding import Embedder
from promptly.ingest.sync import SyncReport, sync_documents
from promptly.store.embedded import EmbeddedPostgresStore

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "docs"


def make_large_corpus(dest: Path, factor: int) -> int:
    """`factor` copies of the sample corpus, each made distinct (numbers and names shifted)."""
    files = sorted(p for p in SAMPLE.rglob("*") if p.is_file())
    for copy in range(factor):
        for path in files:
            text = path.read_text(encoding="utf-8")
            text = re.sub(r"\d+", lambda m, c=copy: str(int(m.group()) + c), text)
            text = f"Edition {copy} of this page.\n\n{text}"
            out = dest / f"copy{copy:02d}" / path.relative_to(SAMPLE)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
    return len(files) * factor


def timed_ingest(root: Path, store: EmbeddedPostgresStore, embedder: Embedder) -> SyncReport:
    chunker = TokenChunker(chunk_tokens=200, overlap_tokens=32)
    source = SourceConfig(path=str(root))
    return sync_documents(load_source(source, chunker.fingerprint()), store, chunker, embedder)


def measure(name: str, root: Path, workdir: Path, embedder: Embedder) -> float:
    store = EmbeddedPostgresStore(workdir / f"pg-{name}", embedding_dim=embedder.dimension)
    store.migrate()
    first = timed_ingest(root, store, embedder)
    embedded = embedder.texts_embedded
    again = timed_ingest(root, store, embedder)
    store.close()
    assert again.unchanged == first.added and embedder.texts_embedded == embedded, "re-ingest re-embedded"
    ratio = first.seconds / again.seconds
    print(f"[{name}] documents={first.added} chunks={first.chunks_written} "
          f"first_ingest_s={first.seconds:.2f} chunks_per_s={first.chunks_written / first.seconds:.1f} "
          f"reingest_s={again.seconds:.3f} speedup={ratio:.1f}x", flush=True)
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factor", type=int, default=20, help="size of the large corpus, in sample corpora")
    args = parser.parse_args()
    embedder = Embedder()
    _ = embedder.model  # loaded once, outside the timings
    work = Path(tempfile.mkdtemp(prefix="promptly-bench-"))
    try:
        measure("sample", SAMPLE, work, embedder)
        large = work / "large"
        n = make_large_corpus(large, args.factor)
        print(f"generated {n} documents ({args.factor}x the sample corpus)", flush=True)
        ratio = measure(f"{args.factor}x", large, work, embedder)
        print(f"reingest_speedup={ratio:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
