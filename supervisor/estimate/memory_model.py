"""The closed-form memory model of one training step of a decoder (no torch needed to run it).

Memory is counted as named terms, each live in some of four phases of a step:

- forward end: the forward has run and the loss is computed; every activation the backward
  needs is saved, and the logits with the loss's buffers are alive;
- backward start: the loss's backward is running (its gradient buffers of size B x L x V);
- layer backward: from the head's backward on: the head's gradient exists, the logits'
  gradient or one layer's gradient buffers, and with checkpointing one layer recomputed;
- optimiser step: the activations are gone; all gradients and the optimiser's states and
  temporaries are alive.

The peak is the largest phase, not the sum of all terms. Activations are counted tensor by
tensor as the Hugging Face Llama/Qwen modules save them for backward (see `layer_saved`), which
is what the calibration in bench/estimate.py measures against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from supervisor.estimate.model_config import ALL_LINEARS, MLP_LINEARS, ModelConfig, count_params

FORWARD = "forward end"
BACKWARD = "backward start"  # the loss's backward
LAYERS = "layer backward"  # from the head's backward on, one layer at a time
STEP = "optimizer step"
PHASES = (FORWARD, BACKWARD, LAYERS, STEP)
SHORT = {FORWARD: "fwd", BACKWARD: "bwd-start", LAYERS: "bwd-layers", STEP: "step"}
ALWAYS = PHASES

GB = 1024**3  # GiB, as NVML and the vram rule count them
CUDA_CONTEXT_GB = 0.5  # the CUDA context and kernels of one process, before any tensor
ALLOCATOR_MARGIN = 0.07  # caching-allocator slack (reserved minus allocated), share of the rest

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
METHODS = ("sft", "lora", "qlora", "gkd")
OPTIMIZERS = ("adamw", "adamw_8bit", "sgd", "sgd_momentum")
ATTENTIONS = ("sdpa", "flash", "eager")
# 4-bit NF4 with double quantisation (QLoRA): 0.5 B/param + 8-bit absmax per 64 weights + an
# fp32 constant per 256 absmax.
QLORA_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)


@dataclass(frozen=True, slots=True)
class TrainSettings:
    """What a training step does, as far as memory is concerned."""

    method: str = "sft"  # sft | lora | qlora | gkd (gkd: LoRA student, teacher = adapters off)
    micro_batch: int = 1
    grad_accum: int = 1
    seq_len: int = 512
    weights_dtype: str = "bf16"  # how the model's parameters (and their grads) are stored
    compute_dtype: str = "bf16"  # activations (autocast or the weights' dtype)
    master_fp32: bool = False  # mixed precision: the optimiser keeps fp32 master weights
    optimizer: str = "adamw"
    foreach: bool = True  # torch's foreach AdamW (CUDA default): one full-size temporary
    lora_rank: int = 8
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    lora_dropout: float = 0.0
    attention: str = "sdpa"
    grad_checkpointing: bool = False
    loss_chunk: int = 0  # positions per loss chunk (checkpointed); 0: one unchunked loss
    entropy_chunk: int | None = None  # an entropy metric over the logits; None: not computed
    logits_kept: bool = False  # the trainer keeps the logits (for metrics) through backward
    sft_alpha: float = 0.0  # gkd: weight of the cross-entropy added on the data's responses
    on_policy: bool = False  # gkd: some steps train on sampled responses (lmbda > 0)
    device: str = "cuda"

    @property
    def tokens(self) -> int:
        return self.micro_batch * self.seq_len

    @property
    def adapters(self) -> bool:
        return self.method in ("lora", "qlora", "gkd")

    @property
    def data_forward(self) -> bool:
        """GKD on sampled responses with sft_alpha: the student also runs on the data's."""
        return self.method == "gkd" and self.on_policy and self.sft_alpha > 0


@dataclass(frozen=True, slots=True)
class Term:
    """One named amount of memory and the phases in which it is alive."""

    name: str
    bytes: int
    phases: tuple[str, ...]

    @property
    def phase(self) -> str:
        return "all" if self.phases == ALWAYS else " + ".join(self.phases)

    @property
    def short_phase(self) -> str:
        return "all" if self.phases == ALWAYS else ",".join(SHORT[p] for p in self.phases)


@dataclass(frozen=True, slots=True)
class Estimate:
    terms: tuple[Term, ...]
    peak_bytes: int
    peak_phase: str
    dominant: Term
    params: dict[str, int]  # by kind, with "total"
    trainable: int
    phase_bytes: dict[str, int]

    @property
    def peak_gb(self) -> float:
        return self.peak_bytes / GB

    def at_peak(self) -> list[Term]:
        """The terms alive at the peak, largest first."""
        live = [t for t in self.terms if self.peak_phase in t.phases and t.bytes > 0]
        return sorted(live, key=lambda t: -t.bytes)


def lora_params(cfg: ModelConfig, train: TrainSettings) -> int:
    """Adapter parameters: r x (in + out) for every targeted linear of every layer."""
    total = 0
    for name in train.lora_targets:
        fan_in, fan_out = cfg.linear_shape(name)
        total += cfg.linear_count(name) * train.lora_rank * (fan_in + fan_out)
    return total * cfg.layers


def _optimizer_bytes_per_param(train: TrainSettings, grad_bytes: int) -> tuple[float, str]:
    """Bytes of optimiser state per trainable parameter, and how the term is named."""
    master = 4 if train.master_fp32 else 0
    state = 4 if train.master_fp32 else grad_bytes  # torch keeps states in the param's dtype
    if train.optimizer == "adamw_8bit":  # two uint8 states + fp32 absmax per 2048 values
        per, what = 2 + 8 / 2048, "8-bit m + v"
    elif train.optimizer == "sgd":
        per, what = 0, "none"
    elif train.optimizer == "sgd_momentum":
        per, what = state, "momentum"
    else:
        per, what = 2 * state, "m + v"
    if master:
        what = f"fp32 master + {what}"
    return master + per, what


def _autocast(train: TrainSettings) -> bool:
    """Autocast computes in 16 bits over weights stored wider (fp32 on CPU, or a float32
    config.json on CUDA)."""
    return train.compute_dtype != train.weights_dtype and train.method != "qlora"


def layer_saved(cfg: ModelConfig, train: TrainSettings) -> list[tuple[str, float]]:
    """Bytes per token that one decoder layer saves for backward, tensor by tensor.

    As the Hugging Face modules do it: an RMSNorm saves its input in fp32 (pow) and, when its
    weight trains, its normalised output; a linear saves its input only when its weight trains
    (or its LoRA branch reads it); RoPE saves nothing large (cos/sin need no grad); SDPA saves
    q, k, v (repeated to every head, and the mask, in a padded batch), its output and a
    logsumexp; eager attention saves the B x heads x L x L softmax
    instead (fp32) and the repeated k/v; SiLU saves its input, the gating product both factors.
    LoRA adds, per targeted linear, the dropout output and mask (or an fp32 cast of the input)
    and the rank-r output of lora_A.
    """
    s = DTYPE_BYTES[train.compute_dtype]
    a = 4  # PEFT keeps adapters in fp32
    full = not train.adapters
    targets = set(train.lora_targets) if train.adapters else set()
    own_copy = train.adapters and (train.lora_dropout > 0 or a != s)
    # Autocast over wider weights: the embedding is no autocast op, so the residual stream and
    # the norms stay in the weights' dtype, and every linear casts its input itself (q, k and
    # v each save their own 16-bit copy of the norm's output); LoRA's fp32 input is cast back
    # to 16 bits by lora_A, which saves that copy and gives a 16-bit output.
    autocast = _autocast(train)
    r = DTYPE_BYTES[train.weights_dtype] if autocast else s  # the residual stream's bytes
    lora_io = s if autocast else a
    h, q, kv, inter = cfg.hidden, cfg.q_dim, cfg.kv_dim, cfg.intermediate
    if cfg.experts:  # each token runs through experts_per_token experts
        inter = cfg.expert_intermediate * cfg.experts_per_token

    def input_saved(consumers: tuple[str, ...]) -> bool:
        return full or (not own_copy and any(c in targets for c in consumers))

    out: list[tuple[str, float]] = []
    for norm, consumers in (
        ("attn norm", ("q_proj", "k_proj", "v_proj")),
        ("mlp norm", MLP_LINEARS[:2]),
    ):
        out.append((f"{norm} input fp32 + rsqrt", 4 * h + 4))
        if full:
            out.append((f"{norm} normalised", r * h))
        if input_saved(consumers):
            copies = len(consumers) if autocast else 1
            out.append(
                (f"{norm} output" + (f" (x{copies} casts)" if autocast else ""), copies * s * h)
            )
    if cfg.qk_norm:
        out.append(("q/k norm inputs fp32", 4 * (q + kv) + 4 * (cfg.heads + cfg.kv_heads)))
        if full:
            out.append(("q/k norm normalised", s * (q + kv)))
    if train.attention == "eager":
        out.append(("q, k and v repeated to all heads", s * 3 * q))
        out.append(("attention softmax fp32 (B x heads x L x L)", 4 * cfg.heads * train.seq_len))
        if s != 4:
            out.append(("attention probs cast", s * cfg.heads * train.seq_len))
        if input_saved(("o_proj",)):
            out.append(("o_proj input", s * q))
    elif train.attention == "sdpa":
        # A padded batch (full length but for one row: the worst case) gives SDPA an attention
        # mask, which it saves per layer as a float B x L x L in q's dtype; with a mask,
        # transformers repeats k and v to every head (SDPA's GQA takes no mask)
        out.append(("q, k and v repeated to all heads (sdpa, padded batch)", s * 3 * q))
        out.append(("attention mask (B x L x L, sdpa)", s * train.seq_len))
    else:  # flash attention unpads a padded batch: no mask, k and v at their own heads
        out.append(("q, k, v (flash)", s * (q + 2 * kv)))
    if train.attention != "eager":  # the output is laid out (B, L, heads, d): o_proj's input
        out.append(("attention output = o_proj input, logsumexp", s * q + 4 * cfg.heads))
    out.append(("MLP gate, act(gate), up", 3 * s * inter))
    if input_saved(("down_proj",)):
        out.append(("down_proj input", s * inter))
    if cfg.experts:
        out.append(("router logits and routing", 4 * cfg.experts * 3))
    for name in ALL_LINEARS:
        if name not in targets:
            continue
        fan_in, _ = cfg.linear_shape(name)
        k = cfg.experts_per_token if (cfg.experts and name in MLP_LINEARS) else 1
        if train.lora_dropout > 0:  # CUDA's fused dropout keeps a bool mask, the CPU's a float
            mask = 1 if train.device == "cuda" else a
            out.append((f"LoRA {name} dropout output + mask", k * fan_in * (lora_io + mask)))
        elif a != s:
            kind = "16-bit cast of the" if autocast else "fp32"
            out.append((f"LoRA {name} {kind} input", k * fan_in * lora_io))
        out.append((f"LoRA {name} lora_A output", k * train.lora_rank * lora_io))
    return out


def _loss_terms(cfg: ModelConfig, train: TrainSettings, data_forward: int = 0) -> list[Term]:
    """The logits and what the loss (and GKD's teacher, and an entropy metric) hold of B x L x V.

    Counted as the reference trainer and Hugging Face compute them. Chunked (the reference
    trainer, trainer/losses.py): forward holds a contiguous fp32 copy of the chunk and its
    log_softmax; backward recomputes one chunk at a time (CE: a contiguous fp32 copy of the
    chunk and its softmax, which becomes the chunk's gradient) and copies it into the logits'
    gradient, allocated once in the logits' dtype after the first chunk's buffers are freed.
    Unchunked (Hugging Face): the fp32 upcast (16-bit logits only) and the log_softmax in
    forward, the log_softmax with two gradients in backward. GKD's generalized JSD holds 6
    (forward, no graph) and 12 (backward) fp32 buffers per position: two log_softmax, their shifted
    copies and stack, the mixture, the KL terms and their gradients (backward recomputes them a
    chunk at a time). Its sft_alpha cross-entropy on the same logits shares that backward and its
    gradient (trainer/losses.py); on sampled responses it is a second forward on the data
    (`data_forward` bytes: its activations and logits), whose cross-entropy backward runs first,
    then the JSD's once that forward's memory is freed.
    """
    s = DTYPE_BYTES[train.compute_dtype]
    btv = train.tokens * cfg.vocab
    # Hugging Face drops the logits once the loss has them; the reference trainer keeps them
    # (detached, for its entropy metric) until the micro-batch's backward is done
    live = (FORWARD, BACKWARD, LAYERS) if train.logits_kept else (FORWARD,)
    terms = [Term("logits (B x L x V)", s * btv, live)]
    gkd = train.method == "gkd"
    if gkd:
        terms.append(Term("teacher logits (no grad)", s * btv, (FORWARD, BACKWARD)))
    if gkd:
        fwd_bufs, bwd_bufs = 6, 12
    elif train.loss_chunk:
        fwd_bufs, bwd_bufs = 2, 2
    else:
        fwd_bufs, bwd_bufs = (1 if s != 4 else 0) + 1, 3
    # An entropy metric runs after the loss's forward: its buffers replace the loss's transient
    # ones (log_softmax, its exp and their product in fp32);
    # unchunked, this is the 3 x 7.5 GB of the entropy plot in the story.
    entropy = 0
    if train.entropy_chunk is not None:
        width = train.seq_len
        if train.entropy_chunk:
            width = min(train.entropy_chunk, max(1, train.seq_len - 1))
        # log_softmax, its exp and their product (a 16-bit chunk's fp32 copy goes before exp)
        entropy = 12 * train.micro_batch * width * cfg.vocab
    metric = " or the entropy metric's" if entropy else ""
    if train.loss_chunk:  # the trainer shifts: L - 1 positions are scored
        positions = max(1, train.seq_len - 1)
        per_chunk = train.micro_batch * min(train.loss_chunk, positions) * cfg.vocab * 4
        fwd = max(fwd_bufs * per_chunk, entropy)
        terms.append(Term(f"loss buffers fp32 (one chunk{metric})", fwd, (FORWARD,)))
        # the first chunk's buffers; then its gradient beside the logits' (one B x L x V
        # tensor in their dtype, allocated once); then each later chunk's buffers beside that
        full = s * train.micro_batch * train.seq_len * cfg.vocab

        def chunked_backward(bufs: int) -> int:
            bwd = max(bufs * per_chunk, per_chunk + full)
            return max(bwd, full + bufs * per_chunk) if train.loss_chunk < positions else bwd

        bwd = chunked_backward(bwd_bufs)
        name = "loss backward (logits' gradient + one chunk fp32)"
        if data_forward:  # the data's CE beside that forward; then the JSD's, without it
            bwd = max(chunked_backward(2), bwd - data_forward)
            name = "loss backward (the data's CE, then the JSD's)"
        terms.append(Term(name, bwd, (BACKWARD,)))
    else:
        name = "loss buffers fp32 (log_softmax" + (", upcast" if s != 4 else "") + f"{metric})"
        fwd = max(4 * fwd_bufs * btv, 4 * btv + entropy)  # the log_softmax stays saved
        terms.append(Term(name, fwd, (FORWARD,)))
        terms.append(
            Term("loss backward fp32 (log_softmax + grads)", 4 * bwd_bufs * btv, (BACKWARD,))
        )
    # after the loss: the logits' gradient at the head, then, one layer at a time, the MLP's
    # input gradients (down_proj's input, act(gate) and up: 3 x B x L x intermediate)
    inter = cfg.expert_intermediate * cfg.experts_per_token if cfg.experts else cfg.intermediate
    grads = max(s * btv, 3 * s * train.tokens * inter)
    terms.append(Term("backward gradient buffers (logits or one MLP)", grads, (LAYERS,)))
    return terms


def estimate(cfg: ModelConfig, train: TrainSettings) -> Estimate:
    """The memory terms of one training step, the peak phase and its dominant term."""
    params = count_params(cfg)
    wb = DTYPE_BYTES[train.weights_dtype]
    s = DTYPE_BYTES[train.compute_dtype]
    terms: list[Term] = []
    if train.method == "qlora":
        packed = params.linears
        rest = params.total - packed
        terms.append(
            Term(
                "base weights 4-bit NF4 + quant constants",
                int(packed * QLORA_BYTES_PER_PARAM),
                ALWAYS,
            )
        )
        terms.append(Term("embeddings, head and norms (16-bit)", rest * 2, ALWAYS))
    else:
        terms.append(Term(f"weights ({train.weights_dtype})", params.total * wb, ALWAYS))
    if train.adapters:
        trainable = lora_params(cfg, train)
        terms.append(Term(f"LoRA adapters fp32 (rank {train.lora_rank})", trainable * 4, ALWAYS))
        grad_bytes = 4
    else:
        trainable = params.total
        grad_bytes = wb
    grads = trainable * grad_bytes
    # With accumulation the gradients of earlier micro-batches are alive during the next one;
    # otherwise they appear during backward (the head's first), all of them at the step.
    if train.grad_accum > 1:
        terms.append(Term("gradients", grads, ALWAYS))
    else:
        head_grad = 0 if train.adapters else cfg.vocab * cfg.hidden * grad_bytes
        terms.append(Term("gradients", grads - head_grad, (STEP,)))
        if head_grad:
            terms.append(Term("head gradient", head_grad, (LAYERS, STEP)))
    per_param, what = _optimizer_bytes_per_param(train, grad_bytes)
    terms.append(Term(f"optimizer states ({what})", int(trainable * per_param), ALWAYS))
    if train.optimizer == "adamw":  # SGD updates its momentum buffer in place
        state = 4 if train.master_fp32 else grad_bytes
        largest = max(cfg.vocab * cfg.hidden, cfg.intermediate * cfg.hidden)
        temp = trainable * state if train.foreach else 2 * min(trainable, largest) * state
        terms.append(Term("optimizer temporaries", temp, (STEP,)))

    if train.compute_dtype != train.weights_dtype and train.method != "qlora":
        # autocast casts each linear's weight to 16 bits once per forward; the copies are saved
        # for the backward (the gradient of the input needs them) until it has run
        copies = (params.linears + cfg.vocab * cfg.hidden) * DTYPE_BYTES[train.compute_dtype]
        terms.append(Term("autocast weight copies", copies, (FORWARD, BACKWARD, LAYERS)))
    tokens = train.tokens
    per_layer = sum(b for _, b in layer_saved(cfg, train))
    # the final norm's fp32 input (+ rsqrt); trained, its normalised input (the residual's
    # dtype) and its output, the head's input (a 16-bit cast of it under autocast)
    r = DTYPE_BYTES[train.weights_dtype] if _autocast(train) else s
    final_norm = 4 * cfg.hidden + 4 + ((r + s) * cfg.hidden if not train.adapters else 0)
    if train.grad_checkpointing:
        saved = cfg.layers * s * cfg.hidden * tokens
        forward_saved = saved
        terms.append(Term("layer inputs (checkpointed)", saved, (FORWARD, BACKWARD, LAYERS)))
        # the recomputed layer's first norm reads the checkpointed input itself when it is fp32
        recomputed = per_layer - (4 * cfg.hidden if s == 4 else 0)
        terms.append(Term("one layer recomputed in backward", int(recomputed * tokens), (LAYERS,)))
    else:
        acts = int(cfg.layers * per_layer * tokens)
        if train.adapters:  # layer 0's first norm sees no grad before the first adapter
            acts -= (4 * cfg.hidden + 4) * tokens
        forward_saved = acts
        terms.append(Term(f"activations ({cfg.layers} layers)", acts, (FORWARD, BACKWARD, LAYERS)))
    terms.append(Term("final norm", final_norm * tokens, (FORWARD, BACKWARD)))
    data_forward = 0
    if train.data_forward:  # saved like the first forward: every layer, the norm, the logits
        data_forward = forward_saved + (final_norm + s * cfg.vocab) * tokens
        name = "student forward on the data (sft_alpha, on-policy)"
        terms.append(Term(name, data_forward, (FORWARD, BACKWARD)))
    terms.extend(_loss_terms(cfg, train, data_forward))

    if train.device == "cuda":
        terms.append(Term("CUDA context", int(CUDA_CONTEXT_GB * GB), ALWAYS))
    phase_bytes = {p: sum(t.bytes for t in terms if p in t.phases) for p in PHASES}
    if train.device == "cuda":
        margin = int(ALLOCATOR_MARGIN * (max(phase_bytes.values()) - CUDA_CONTEXT_GB * GB))
        terms.append(Term("allocator margin", margin, ALWAYS))
        phase_bytes = {p: b + margin for p, b in phase_bytes.items()}
    peak_phase = max(PHASES, key=lambda p: phase_bytes[p])
    live = [t for t in terms if peak_phase in t.phases]
    return Estimate(
        terms=tuple(terms),
        peak_bytes=phase_bytes[peak_phase],
        peak_phase=peak_phase,
        dominant=max(live, key=lambda t: t.bytes),
        params=params.as_dict(),
        trainable=trainable,
        phase_bytes=phase_bytes,
    )


def _fits(cfg: ModelConfig, train: TrainSettings, budget: float) -> bool:
    return estimate(cfg, train).peak_bytes <= budget


def suggest_fit(cfg: ModelConfig, train: TrainSettings, gpu_gb: float) -> dict[str, int]:
    """The smallest change that fits in `gpu_gb`: {} when it already fits or nothing does.

    First the largest micro-batch that fits, keeping the effective batch (micro_batch x
    grad_accum) by raising grad_accum; then, at micro-batch 1, the longest sequence length;
    then, for LoRA, the largest rank.
    """
    budget = gpu_gb * GB
    if _fits(cfg, train, budget):
        return {}
    effective = train.micro_batch * train.grad_accum
    for mb in range(train.micro_batch - 1, 0, -1):
        accum = math.ceil(effective / mb)
        if mb * accum != effective and mb != 1:
            continue  # keep the effective batch exact where a divisor allows
        if _fits(cfg, replace(train, micro_batch=mb, grad_accum=accum), budget):
            return {"micro_batch": mb, "grad_accum": accum}
    one = replace(train, micro_batch=1, grad_accum=effective)
    change: dict[str, int] = (
        {"micro_batch": 1, "grad_accum": effective} if train.micro_batch > 1 else {}
    )
    # A length under a quarter of the original is a different experiment: try the rank instead.
    floor = max(1, train.seq_len // 4)
    lo, hi = floor - 1, train.seq_len - 1  # binary search: the largest length that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _fits(cfg, replace(one, seq_len=mid), budget):
            lo = mid
        else:
            hi = mid - 1
    if lo >= floor:
        return {**change, "seq_len": lo}
    rank = train.lora_rank // 2 if train.adapters else 0
    while rank >= 1:
        if _fits(cfg, replace(one, lora_rank=rank), budget):
            return {**change, "lora_rank": rank}
        rank //= 2
    return {}
