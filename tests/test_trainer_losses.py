"""The trainer's chunked losses: same values as the plain formulas, memory bounded by the chunk."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from trainer.losses import IGNORE, cross_entropy, generalized_jsd, token_entropy  # noqa: E402

torch.set_num_threads(1)


def _inputs(b: int = 2, length: int = 37, vocab: int = 50, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, length, vocab, generator=g) * 3
    labels = torch.randint(0, vocab, (b, length), generator=g)
    labels[:, :5] = IGNORE  # a prompt
    labels[1, -4:] = IGNORE  # padding
    return logits, labels


def test_chunked_cross_entropy_matches_plain_cross_entropy() -> None:
    """A user's loss does not depend on the chunk size: chunked CE equals torch's CE, shifted."""
    logits, labels = _inputs()
    plain = F.cross_entropy(
        logits[:, :-1].reshape(-1, 50), labels[:, 1:].reshape(-1), ignore_index=IGNORE
    )
    for chunk in (1, 7, 36, 1000):
        assert torch.allclose(cross_entropy(logits, labels, chunk), plain, atol=1e-5)


def test_chunked_cross_entropy_gradient_matches_plain() -> None:
    """Checkpointed chunks give the same gradient as the unchunked loss."""
    logits, labels = _inputs()
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    cross_entropy(a, labels, chunk=5).backward()
    F.cross_entropy(
        b[:, :-1].reshape(-1, 50), labels[:, 1:].reshape(-1), ignore_index=IGNORE
    ).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_jsd_is_zero_between_equal_distributions() -> None:
    """A student equal to its teacher has a generalized JSD of zero, for any beta."""
    logits, labels = _inputs()
    for beta in (0.0, 0.3, 1.0):
        assert abs(float(generalized_jsd(logits, logits.clone(), labels, beta, 1.0, 8))) < 1e-6


def test_jsd_beta_ends_are_the_two_kl_directions() -> None:
    """beta=0 is KL(teacher||student), beta=1 is KL(student||teacher), the mix lies below both."""
    s, labels = _inputs(seed=1)
    t, _ = _inputs(seed=2)
    mask = labels[:, 1:] != IGNORE
    ls, lt = F.log_softmax(s[:, :-1] / 2, -1), F.log_softmax(t[:, :-1] / 2, -1)
    kl_ts = ((lt.exp() * (lt - ls)).sum(-1))[mask].mean()
    kl_st = ((ls.exp() * (ls - lt)).sum(-1))[mask].mean()
    assert torch.allclose(generalized_jsd(s, t, labels, 0.0, 2.0, 9), kl_ts, atol=1e-5)
    assert torch.allclose(generalized_jsd(s, t, labels, 1.0, 2.0, 9), kl_st, atol=1e-5)
    mid = float(generalized_jsd(s, t, labels, 0.5, 2.0, 9))
    assert 0.0 < mid < min(float(kl_ts), float(kl_st))
    whole = float(generalized_jsd(s, t, labels, 0.5, 2.0, 1000))
    assert abs(mid - whole) < 1e-5


def test_token_entropy_matches_the_direct_formula() -> None:
    """The chunked entropy metric gives the same per-token entropies as the full softmax."""
    logits, _ = _inputs()
    logp = F.log_softmax(logits, -1)
    assert torch.allclose(token_entropy(logits, 4), -(logp.exp() * logp).sum(-1), atol=1e-5)


def _peak_bytes(fn) -> int:
    """Peak of CPU memory torch allocated while fn ran, replaying the profiler's memory events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events())
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def test_entropy_peak_memory_grows_with_the_chunk_not_the_length() -> None:
    """Computing an entropy plot over 4x longer sequences needs no more memory; a 4x chunk does."""
    vocab, b, chunk = 2000, 2, 16
    short = torch.randn(b, 128, vocab)
    long = torch.randn(b, 512, vocab)
    peak_short = _peak_bytes(lambda: token_entropy(short, chunk))
    peak_long = _peak_bytes(lambda: token_entropy(long, chunk))
    peak_big_chunk = _peak_bytes(lambda: token_entropy(long, chunk * 4))
    one_chunk = b * chunk * vocab * 4  # bytes of one float32 chunk of log-probabilities
    full_softmax = b * 512 * vocab * 4
    # The output (b x L floats) grows with L, but it is vocab times smaller than one chunk.
    assert peak_long < peak_short + b * 512 * 4 + one_chunk // 8
    assert peak_long < 4 * one_chunk < full_softmax
    assert peak_big_chunk > 2 * peak_long
