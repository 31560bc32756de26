"""BLEU and ROUGE against sacrebleu and rouge-score on real text; perplexity against a by-hand loss."""

from __future__ import annotations

import math

import pytest
import sacrebleu
import torch
import torch.nn.functional as F
from rouge_score import rouge_scorer

from promptly.evaluation.metrics import IGNORE_INDEX, AnswerPerplexity, Bleu, Rouge, answer_token_nll, sentence_bleu

# (prediction, reference): paraphrases, multi-sentence answers, punctuation, code, numbers, unicode.
PAIRS = [
    ("The server listens on port 8080 by default.", "By default, the server listens on port 8080."),
    ("Run `emberdb init --data-dir ./data` to create a new cluster. Then start it with `emberdb start`.",
     "Create a cluster with `emberdb init --data-dir ./data`, then run `emberdb start`."),
    ("Retries use exponential back-off: 1s, 2s, 4s, up to 30s.",
     "Retries back off exponentially (1 s, 2 s, 4 s) with a 30 s cap."),
    ("QuillMQ guarantees at-least-once delivery; consumers must be idempotent!",
     "Delivery is at-least-once, so consumers should be idempotent."),
    ("Set TOMLGUARD_STRICT=1 to fail on unknown keys.",
     "Unknown keys cause a failure when TOMLGUARD_STRICT is set to 1."),
    ("The cache holds 1,024 entries and evicts the least recently used one.",
     "It evicts the least-recently-used entry once 1,024 entries are cached."),
    ("Logs are rotated daily. Old logs are compressed with gzip and kept for 14 days.",
     "Logwhale rotates logs every day, compresses old ones with gzip, and keeps them 14 days."),
    ("Yes.", "Yes, it does."),
    ("Gatekeep checks the JWT signature, then the 'exp' and 'aud' claims.",
     "It verifies the JWT's signature and its \"exp\" and \"aud\" claims."),
    ("Cronkite's schedule syntax is \"*/5 * * * *\" for every five minutes.",
     "Use */5 * * * * to run every 5 minutes."),
    ("Breezeweb serves static files from public/ — no configuration is needed.",
     "Static files in the public/ folder are served without any configuration."),
    ("DriftSync resolves conflicts with last-writer-wins, using hybrid logical clocks (HLC).",
     "Conflicts are resolved last-writer-wins based on hybrid logical clocks."),
    ("Running tests: pytest -q; the suite takes about 3.5 minutes. Use -x to stop early.",
     "The test suite (pytest -q) runs in roughly 3.5 minutes; pass -x to stop at the first failure."),
]
PREDS = [p for p, _ in PAIRS]
REFS = [r for _, r in PAIRS]


def test_corpus_bleu_matches_sacrebleu() -> None:
    metric = Bleu()
    metric.update(PREDS, REFS)
    expected = sacrebleu.corpus_bleu(PREDS, [REFS], tokenize="13a").score / 100
    assert 0.05 < expected < 0.95  # real overlap, neither trivial nor perfect
    assert float(metric.compute()) == pytest.approx(expected, abs=1e-4)


def test_corpus_bleu_accumulates_over_batches_and_processes() -> None:
    whole, first, second = Bleu(), Bleu(), Bleu()
    whole.update(PREDS, REFS)
    first.update(PREDS[:5], REFS[:5])
    second.update(PREDS[5:], REFS[5:])
    first.merge_state(second)  # what a distributed sync does with the declared reductions
    assert float(first.compute()) == pytest.approx(float(whole.compute()), abs=1e-6)


def test_bleu_with_several_references_matches_sacrebleu() -> None:
    other = [r.upper() if i % 2 else p for i, (p, r) in enumerate(PAIRS)]
    metric = Bleu()
    metric.update(PREDS, [[r, o] for r, o in zip(REFS, other, strict=True)])
    expected = sacrebleu.corpus_bleu(PREDS, [REFS, other], tokenize="13a").score / 100
    assert float(metric.compute()) == pytest.approx(expected, abs=1e-4)


def test_sentence_bleu_is_sacrebleu_sentence_bleu() -> None:
    for pred, ref in PAIRS:
        assert sentence_bleu(pred, ref) == pytest.approx(sacrebleu.sentence_bleu(pred, [ref]).score / 100, abs=1e-9)
    assert sentence_bleu("", "anything at all") == 0.0


@pytest.mark.parametrize("use_stemmer", [True, False])
def test_rouge_matches_rouge_score(use_stemmer: bool) -> None:
    """rouge-score's default tokenizer (lowercase, non [a-z0-9] -> space) with the same stemming choice."""
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=use_stemmer)
    expected = [scorer.score(ref, pred) for pred, ref in PAIRS]
    metric = Rouge(use_stemmer=use_stemmer)
    metric.update(PREDS[:6], REFS[:6])
    metric.update(PREDS[6:], REFS[6:])
    per_example = metric.per_example()
    overall = metric.compute()
    rank0, rank1 = Rouge(use_stemmer=use_stemmer), Rouge(use_stemmer=use_stemmer)
    rank0.update(PREDS[:4], REFS[:4])
    rank1.update(PREDS[4:], REFS[4:])
    rank0.merge_state(rank1)
    merged = rank0.compute()
    for key in ("rouge1", "rouge2", "rougeL"):
        want = [s[key].fmeasure for s in expected]
        assert per_example[key] == pytest.approx(want, abs=1e-4)
        assert float(overall[key]) == pytest.approx(sum(want) / len(want), abs=1e-4)
        assert float(merged[key]) == pytest.approx(sum(want) / len(want), abs=1e-4)


def test_stemming_changes_rouge_on_this_text() -> None:
    """Guards the parametrisation above: the two settings really are different settings here."""
    stemmed, plain = Rouge(use_stemmer=True), Rouge(use_stemmer=False)
    for metric in (stemmed, plain):
        metric.update(PREDS, REFS)
    assert float(stemmed.compute()["rouge1"]) > float(plain.compute()["rouge1"]) + 0.01


def test_empty_prediction_scores_zero() -> None:
    bleu, rouge = Bleu(), Rouge()
    bleu.update([""], ["The server listens on port 8080."])
    rouge.update([""], ["The server listens on port 8080."])
    assert float(bleu.compute()) == 0.0
    assert all(float(v) == 0.0 for v in rouge.compute().values())


# -- perplexity --------------------------------------------------------------------------------------


class TinyLM(torch.nn.Module):
    def __init__(self, vocab: int = 50, dim: int = 16) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        self.rnn = torch.nn.GRU(dim, dim, batch_first=True)
        self.head = torch.nn.Linear(dim, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.rnn(self.embed(ids))
        return self.head(hidden)


def _batch(seed: int, prompt_lens: list[int], answer_lens: list[int], vocab: int = 50):  # type: ignore[no-untyped-def]
    """Right-padded prompt+answer ids; labels = ids on answer tokens, -100 on prompt and padding."""
    gen = torch.Generator().manual_seed(seed)
    length = max(p + a for p, a in zip(prompt_lens, answer_lens, strict=True)) + 1
    ids = torch.randint(1, vocab, (len(prompt_lens), length), generator=gen)
    labels = torch.full_like(ids, IGNORE_INDEX)
    for row, (p, a) in enumerate(zip(prompt_lens, answer_lens, strict=True)):
        labels[row, p : p + a] = ids[row, p : p + a]
        ids[row, p + a :] = 0  # padding
    return ids, labels


def _by_hand(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
    """Summed NLL and count with F.cross_entropy: logits at t predict the label at t + 1."""
    total, count = 0.0, 0
    for b in range(labels.shape[0]):
        for t in range(1, labels.shape[1]):
            if labels[b, t] != IGNORE_INDEX:
                total += float(F.cross_entropy(logits[b, t - 1][None], labels[b, t][None]))
                count += 1
    return total, count


def test_perplexity_is_exp_mean_answer_token_loss() -> None:
    torch.manual_seed(0)
    model = TinyLM()
    ids, labels = _batch(1, prompt_lens=[5, 3, 7], answer_lens=[4, 6, 2])
    with torch.no_grad():
        logits = model(ids)
    total, count = _by_hand(logits, labels)
    assert count == 12  # answer tokens only: the prompt and padding are masked
    mean_loss = F.cross_entropy(logits[:, :-1].reshape(-1, 50), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert float(mean_loss) == pytest.approx(total / count, rel=1e-5)

    metric = AnswerPerplexity()
    metric.update(logits, labels)
    assert float(metric.compute()) == pytest.approx(math.exp(float(mean_loss)), rel=1e-5)
    nll, tokens = answer_token_nll(logits, labels)
    assert tokens.tolist() == [4, 6, 2]
    assert float(nll.sum()) == pytest.approx(total, rel=1e-5)


def test_perplexity_accumulates_two_batches_as_one() -> None:
    torch.manual_seed(0)
    model = TinyLM()
    ids_a, labels_a = _batch(2, [4, 6], [9, 2])
    ids_b, labels_b = _batch(3, [3], [3])
    width = max(ids_a.shape[1], ids_b.shape[1])

    def pad(t: torch.Tensor, value: int) -> torch.Tensor:
        return F.pad(t, (0, width - t.shape[1]), value=value)

    with torch.no_grad():
        one = AnswerPerplexity()
        one.update(model(torch.cat([pad(ids_a, 0), pad(ids_b, 0)])),
                   torch.cat([pad(labels_a, IGNORE_INDEX), pad(labels_b, IGNORE_INDEX)]))
        sequential = AnswerPerplexity()  # two update() calls on one process
        sequential.update(model(ids_a), labels_a)
        sequential.update(model(ids_b), labels_b)
        rank0, rank1 = AnswerPerplexity(), AnswerPerplexity()  # one batch per process, then synced
        rank0.update(model(ids_a), labels_a)
        rank1.update(model(ids_b), labels_b)
    rank0.merge_state(rank1)  # applies the declared dist_reduce_fx ("sum"), as a distributed sync does
    assert float(sequential.compute()) == pytest.approx(float(one.compute()), rel=1e-6)
    assert float(rank0.compute()) == pytest.approx(float(one.compute()), rel=1e-6)
    # Not the mean of per-batch perplexities: batches with more answer tokens weigh more.
    assert int(one.token_count) == 14


def test_perplexity_stays_finite_for_confidently_wrong_logits() -> None:
    """A softmax-then-log implementation gives inf here; log-softmax keeps the exact value."""
    logits = torch.zeros(1, 3, 4)
    logits[0, :, 0] = 120.0  # always predicts token 0 with p ~ 1 - 3e-52
    labels = torch.tensor([[IGNORE_INDEX, 2, 3]])
    metric = AnswerPerplexity()
    metric.update(logits, labels)
    assert float(metric.compute()) == pytest.approx(math.exp(120.0), rel=1e-4)


def test_perplexity_without_answer_tokens_is_nan_and_shapes_are_checked() -> None:
    metric = AnswerPerplexity()
    metric.update(torch.zeros(1, 3, 5), torch.full((1, 3), IGNORE_INDEX))
    assert math.isnan(float(metric.compute()))
    with pytest.raises(ValueError, match="expected logits"):
        metric.update(torch.zeros(1, 3, 5), torch.zeros(1, 4, dtype=torch.long))
