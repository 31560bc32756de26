"""The embedder: batches of similar lengths (padding bounded) give the same vectors, in input order."""

from __future__ import annotations

import numpy as np

from promptly.ingest.embedding import Embedder, length_groups


def test_length_groups_bound_the_padding_and_keep_every_index() -> None:
    lengths = [5, 400, 12, 9, 800, 11, 1, 390, 700, 6, 0, 10]
    groups = length_groups(lengths, batch_size=3)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for group in groups:
        assert len(group) <= 3
        longest, shortest = max(lengths[i] for i in group), min(lengths[i] for i in group)
        assert longest <= 2.0 * max(shortest, 1)
    assert length_groups([], 8) == []
    assert length_groups([100] * 10, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_vectors_equal_one_at_a_time_and_keep_the_input_order(embedder: Embedder) -> None:
    chunk = ("The proxy listens on port 8080 by default. Set listen_port to change it. Failed upstream calls "
             "are retried three times with exponential backoff that starts at 200 ms. ") * 4
    texts = [chunk, "Port 8080.", "Retries back off.", chunk[:150], "", "Messages are kept for seven days."]
    together = embedder.embed_documents(texts)
    alone = np.vstack([embedder.embed_documents([t]) for t in texts])
    assert together.shape == (len(texts), embedder.dimension)
    np.testing.assert_allclose(together, alone, atol=1e-5)  # same vectors, same order
    assert float(together[1] @ together[0]) > float(together[5] @ together[0])  # port text is nearer the chunk
    assert not np.allclose(together[1], together[2], atol=1e-3)  # a swap of rows would be noticed
