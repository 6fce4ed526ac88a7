"""The trainer's chunked losses: same values as the plain formulas, memory bounded by the chunk."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from trainer.losses import (  # noqa: E402
    IGNORE,
    cross_entropy,
    generalized_jsd,
    jsd_and_cross_entropy,
    token_entropy,
)

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


def _plain_jsd(s, t, labels, beta: float, temperature: float):
    """The generalized JSD written out over the whole (unchunked) shifted logits."""
    ls = F.log_softmax(s[:, :-1].float() / temperature, -1)
    lt = F.log_softmax(t[:, :-1].float() / temperature, -1)
    if beta == 0.0:
        per_tok = (lt.exp() * (lt - ls)).sum(-1)
    elif beta == 1.0:
        per_tok = (ls.exp() * (ls - lt)).sum(-1)
    else:
        lm = torch.log(beta * lt.exp() + (1 - beta) * ls.exp())
        per_tok = beta * (lt.exp() * (lt - lm)).sum(-1) + (1 - beta) * (ls.exp() * (ls - lm)).sum(
            -1
        )
    return per_tok[labels[:, 1:] != IGNORE].mean()


def _grad(fn, *tensors):
    """Gradients of fn(*copies) with respect to fresh leaf copies of the tensors."""
    leaves = [x.detach().clone().requires_grad_(True) for x in tensors]
    fn(*leaves).backward()
    return [x.grad for x in leaves]


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_chunked_jsd_gradient_matches_plain(beta: float, temperature: float) -> None:
    """GKD trains the student with the same gradient whatever the chunk, for any beta and T."""
    s, labels = _inputs(seed=3)
    t, _ = _inputs(seed=4)
    (plain,) = _grad(lambda x: _plain_jsd(x, t, labels, beta, temperature), s)
    for chunk in (1, 5, 1000):
        (chunked,) = _grad(
            lambda x, c=chunk: generalized_jsd(x, t, labels, beta, temperature, c), s
        )
        assert torch.allclose(chunked, plain, atol=1e-7, rtol=1e-4), (chunk, beta, temperature)
    assert plain[:, 5:-1].abs().sum() > 0  # scored positions do get a gradient
    assert not plain[:, -1].any() and not plain[1, -4:].any()  # unscored ones none


def test_jsd_gradient_reaches_a_teacher_that_asks_for_one() -> None:
    """A teacher whose logits require a gradient gets the same one as the unchunked JSD."""
    s, labels = _inputs(seed=5)
    t, _ = _inputs(seed=6)
    plain = _grad(lambda a, b: _plain_jsd(a, b, labels, 0.5, 2.0), s, t)
    chunked = _grad(lambda a, b: generalized_jsd(a, b, labels, 0.5, 2.0, 4), s, t)
    for got, want in zip(chunked, plain, strict=True):
        assert torch.allclose(got, want, atol=1e-7, rtol=1e-4)


def test_jsd_over_a_larger_student_vocabulary_scores_the_shared_tokens() -> None:
    """A student with padded vocabulary columns gets no gradient there, the rest as unpadded."""
    s, labels = _inputs(seed=7, vocab=56)
    t, _ = _inputs(seed=8)
    (plain,) = _grad(lambda x: _plain_jsd(x[..., :50], t, labels, 0.5, 1.0), s)
    (chunked,) = _grad(lambda x: generalized_jsd(x, t, labels, 0.5, 1.0, 6), s)
    assert torch.allclose(chunked, plain, atol=1e-7, rtol=1e-4)
    assert not chunked[..., 50:].any()


def test_bf16_logits_get_the_gradients_of_the_plain_losses() -> None:
    """Mixed-precision (bf16) logits: chunked CE and JSD give bf16 gradients equal to the plain
    losses' (computed in fp32, then rounded), with -100 labels scoring nothing."""
    s, labels = _inputs(seed=9)
    t, _ = _inputs(seed=10)
    s, t = s.bfloat16(), t.bfloat16()

    def plain_ce(x):
        return F.cross_entropy(
            x[:, :-1].float().reshape(-1, 50), labels[:, 1:].reshape(-1), ignore_index=IGNORE
        )

    pairs = [
        (_grad(plain_ce, s)[0], _grad(lambda x: cross_entropy(x, labels, 7), s)[0]),
        (
            _grad(lambda x: _plain_jsd(x, t, labels, 0.5, 2.0), s)[0],
            _grad(lambda x: generalized_jsd(x, t, labels, 0.5, 2.0, 7), s)[0],
        ),
    ]
    for plain, chunked in pairs:
        assert chunked.dtype == torch.bfloat16
        assert torch.allclose(chunked.float(), plain.float(), atol=1e-6, rtol=1e-2)
        assert not chunked[:, :4].any() and not chunked[:, -1].any()


def test_token_entropy_matches_the_direct_formula() -> None:
    """The chunked entropy metric gives the same per-token entropies as the full softmax."""
    logits, _ = _inputs()
    logp = F.log_softmax(logits, -1)
    assert torch.allclose(token_entropy(logits, 4), -(logp.exp() * logp).sum(-1), atol=1e-5)


def _peak_bytes(fn) -> int:
    """Peak of CPU memory torch allocated while fn ran, replaying the profiler's memory events.

    The allocation and free events themselves, in time order: an operator's net memory would
    hide a buffer it allocates and frees inside (a chunk's softmax in a loss's backward).
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
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


def test_loss_backward_holds_one_full_size_gradient_not_three() -> None:
    """Chunking the loss saves memory in backward too: with chunk << L the backward's peak is
    the logits' gradient plus one chunk's buffers (it was three full-size tensors)."""
    vocab, b, length, chunk = 2000, 2, 512, 16
    logits = (torch.randn(b, length, vocab) * 3).requires_grad_(True)
    teacher = torch.randn(b, length, vocab)
    labels = torch.randint(0, vocab, (b, length))
    full = b * length * vocab * 4  # the gradient: one fp32 B x L x V tensor
    one_chunk = b * chunk * vocab * 4

    def backward_peak(loss_fn, chunk_size: int) -> int:
        loss = loss_fn(chunk_size)
        peak = _peak_bytes(loss.backward)
        logits.grad = None
        return peak

    def ce(c: int):
        return cross_entropy(logits, labels, c)

    def jsd(c: int):
        return generalized_jsd(logits, teacher, labels, 0.5, 1.0, c)

    # CE: softmax and a contiguous copy of the chunk; the JSD's graph: about 12 fp32 buffers
    for loss_fn, chunk_buffers in ((ce, 2), (jsd, 12)):
        chunked = backward_peak(loss_fn, chunk)
        assert full <= chunked <= full + chunk_buffers * one_chunk + 64 * 1024
        assert chunked < 1.5 * full
        # one chunk of all positions: its buffers are full-size, beside the gradient
        assert backward_peak(loss_fn, length) > 1.9 * full


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("student_vocab", [50, 56])
def test_gkd_with_sft_term_trains_as_the_two_losses_added(dtype: str, student_vocab: int) -> None:
    """GKD with sft_alpha: the one-function JSD + CE gives the loss values and the student's
    gradient of generalized_jsd + alpha * cross_entropy computed apart (also with padded
    student vocabulary columns, which only the CE scores), in fp32 and bf16."""
    s, labels = _inputs(seed=11, vocab=student_vocab)
    t, _ = _inputs(seed=12)
    s, t = s.to(getattr(torch, dtype)), t.to(getattr(torch, dtype))
    alpha = 0.7
    apart = {}

    def two_losses(x):
        apart["jsd"] = generalized_jsd(x, t, labels, 0.5, 2.0, 7)
        apart["ce"] = cross_entropy(x, labels, 7)
        return apart["jsd"] + alpha * apart["ce"]

    fused = {}

    def one_function(x):
        fused["jsd"], fused["ce"] = jsd_and_cross_entropy(x, t, labels, 0.5, 2.0, 7)
        return fused["jsd"] + alpha * fused["ce"]

    (want,) = _grad(two_losses, s)
    (got,) = _grad(one_function, s)
    for key in ("jsd", "ce"):
        assert torch.allclose(fused[key], apart[key], atol=1e-6, rtol=1e-6), key
    assert got.dtype == s.dtype
    # bf16: the sum is rounded once here, where the two losses rounded each term
    tol = {"atol": 1e-7, "rtol": 1e-5} if dtype == "float32" else {"atol": 1e-5, "rtol": 1e-2}
    assert torch.allclose(got.float(), want.float(), **tol)
    assert got[:, 5:-1].abs().sum() > 0 and not got[:, -1].any() and not got[1, -4:].any()
    if student_vocab > 50:  # the CE's softmax covers the padded columns, the JSD does not
        assert got[:, 5:-1, 50:].abs().sum() > 0


def test_gkd_with_sft_term_backward_holds_one_gradient_not_two() -> None:
    """Adding the SFT term to GKD costs no full-size tensor in backward: the peak is the
    JSD's alone (one logits' gradient + one chunk's graph), where the two losses apart hold
    two gradients of the logits at once."""
    vocab, b, length, chunk = 2000, 2, 512, 16
    logits = (torch.randn(b, length, vocab) * 3).requires_grad_(True)
    teacher = torch.randn(b, length, vocab)
    labels = torch.randint(0, vocab, (b, length))
    full = b * length * vocab * 4
    one_chunk = b * chunk * vocab * 4

    def backward_peak(loss) -> int:
        peak = _peak_bytes(loss.backward)
        logits.grad = None
        return peak

    jsd, ce = jsd_and_cross_entropy(logits, teacher, labels, 0.5, 1.0, chunk)
    fused = backward_peak(jsd + ce)
    apart = backward_peak(
        generalized_jsd(logits, teacher, labels, 0.5, 1.0, chunk)
        + cross_entropy(logits, labels, chunk)
    )
    alone = backward_peak(generalized_jsd(logits, teacher, labels, 0.5, 1.0, chunk))
    assert full <= fused <= full + 13 * one_chunk + 64 * 1024
    assert fused <= alone + 2 * one_chunk
    assert apart >= 2 * full  # what the one function saves: a whole B x L x V tensor
