"""The closed-form memory model: parameter counts, each formula term, phases, suggestions."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

import supervisor.estimate.preflight as est_mod
from supervisor.estimate.memory_model import (
    CUDA_CONTEXT_GB,
    GB,
    QLORA_BYTES_PER_PARAM,
    TrainSettings,
    estimate,
    layer_saved,
    lora_params,
    suggest_fit,
)
from supervisor.estimate.model_config import (
    TINY_CONFIG,
    ModelConfigError,
    config_from_dict,
    count_params,
    load_model_config,
)
from supervisor.estimate.preflight import (
    EstimateError,
    preflight,
    recipe_inputs,
    suggest_adjustment,
)
from supervisor.recipe.model import recipe_from_yaml

# Public shapes, written here so that no test downloads anything.
QWEN3_4B = {
    "model_type": "qwen3",
    "hidden_size": 2560,
    "intermediate_size": 9728,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}
LLAMA3_8B = {
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
QWEN = config_from_dict(QWEN3_4B)
LLAMA = config_from_dict(LLAMA3_8B)


def term(estimate_: object, name: str) -> int:
    found = [t.bytes for t in estimate_.terms if t.name.startswith(name)]  # type: ignore[attr-defined]
    assert found, f"no term {name!r}"
    return found[0]


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine has no NVIDIA GPU; tests that need a card's size give it explicitly."""
    monkeypatch.setattr(est_mod, "_nvml_total_gb", lambda: None)


def test_qwen3_4b_parameters_by_kind() -> None:
    """Qwen3-4B counts 4.02B parameters: tied embedding, GQA attention with q/k norms, SwiGLU."""
    p = count_params(QWEN)
    assert p.embedding == 151936 * 2560
    assert p.head == 0  # tied
    assert p.attention == 36 * (2560 * 4096 + 2 * 2560 * 1024 + 4096 * 2560)
    assert p.mlp == 36 * 3 * 2560 * 9728
    assert p.norms == 36 * (2 * 2560 + 2 * 128) + 2560
    assert p.total == 4_022_468_096


def test_llama3_8b_parameters_by_kind() -> None:
    """Llama-3-8B counts 8.03B parameters: untied head, 8 KV heads of 128."""
    p = count_params(LLAMA)
    assert p.head == p.embedding == 128256 * 4096
    assert p.attention == 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024)
    assert p.total == 8_030_261_248


def test_lora_trainable_matches_peft_count() -> None:
    """LoRA r=16 on q_proj,v_proj of Llama-3-8B trains 6,815,744 parameters, as PEFT prints."""
    train = TrainSettings(method="lora", lora_rank=16, lora_targets=("q_proj", "v_proj"))
    assert lora_params(LLAMA, train) == 6_815_744
    assert estimate(LLAMA, train).trainable == 6_815_744


def test_weights_grads_and_optimizer_bytes_per_param() -> None:
    """Mixed-precision AdamW costs 16 B/param, pure bf16 AdamW 8, 8-bit Adam ~6, SGD 4."""
    p = count_params(QWEN).total
    base = TrainSettings(micro_batch=1, seq_len=16, device="cpu")
    mixed = estimate(QWEN, replace(base, master_fp32=True))
    assert term(mixed, "weights") == 2 * p
    assert term(mixed, "gradients") + term(mixed, "head gradient") == 2 * p
    assert term(mixed, "optimizer states (fp32 master + m + v)") == 12 * p
    pure = estimate(QWEN, base)
    assert term(pure, "optimizer states (m + v)") == 4 * p
    eight = estimate(QWEN, replace(base, optimizer="adamw_8bit"))
    assert term(eight, "optimizer states (8-bit m + v)") == int(p * (2 + 8 / 2048))
    sgd = estimate(QWEN, replace(base, optimizer="sgd"))
    assert term(sgd, "optimizer states (none)") == 0
    momentum = estimate(QWEN, replace(base, optimizer="sgd_momentum"))
    assert term(momentum, "optimizer states (momentum)") == 2 * p


def test_qlora_packs_linears_in_4bit_and_keeps_embeddings_16bit() -> None:
    """QLoRA: decoder linears at 4 bits + double-quantised constants, embeddings and head bf16."""
    p = count_params(LLAMA)
    e = estimate(LLAMA, TrainSettings(method="qlora", lora_rank=16, seq_len=16))
    assert term(e, "base weights 4-bit") == int(p.linears * QLORA_BYTES_PER_PARAM)
    assert term(e, "embeddings, head and norms") == 2 * (p.embedding + p.head + p.norms)
    assert term(e, "LoRA adapters fp32") == 4 * 6_815_744


def test_activations_per_layer_hand_computed() -> None:
    """A Llama-3-8B layer in bf16 SFT with SDPA saves 217,224 bytes per token at length 2048,
    tensor by tensor, in a padded batch (the worst case: SDPA gets the padding mask)."""
    h, q, kv, inter, heads = 4096, 4096, 1024, 14336, 32
    by_hand = (
        2 * (4 * h + 4)  # the two RMSNorm inputs in fp32 (+ rsqrt)
        + 2 * 2 * h  # their normalised outputs (norm weights train)
        + 2 * 2 * h  # their outputs, saved by the linears that read them
        + 2 * 3 * q  # q, and k, v repeated to all heads (with a mask, no GQA in SDPA)
        + 2 * 2048  # the float mask SDPA saves: B x L x L in bf16, per layer
        + 2 * q
        + 4 * heads  # SDPA output (also o_proj's input: no copy) + logsumexp
        + 3 * 2 * inter  # gate, act(gate), up
        + 2 * inter  # down_proj input
    )
    train = TrainSettings(micro_batch=1, seq_len=2048)
    assert by_hand == 217_224
    assert sum(b for _, b in layer_saved(LLAMA, train)) == by_hand
    e = estimate(LLAMA, train)
    assert term(e, "activations (32 layers)") == 32 * by_hand * 2048
    # flash attention unpads: no mask, k and v at their 8 heads
    flash = layer_saved(LLAMA, replace(train, attention="flash"))
    assert sum(b for _, b in flash) == by_hand - 2 * 3 * q - 2 * 2048 + 2 * (q + 2 * kv)


def test_eager_attention_adds_the_quadratic_scores() -> None:
    """Eager attention saves the B x heads x L x L softmax in fp32 (+ a bf16 cast); SDPA not."""
    sdpa = TrainSettings(micro_batch=2, seq_len=1024)
    eager = replace(sdpa, attention="eager")
    extra = term(estimate(LLAMA, eager), "activations") - term(estimate(LLAMA, sdpa), "activations")
    tokens = 2 * 1024
    scores = 32 * tokens * 32 * 1024 * (4 + 2)  # layers x B x L x heads x L x (fp32 + bf16)
    repeated_qkv = 32 * tokens * 2 * 3 * 4096  # q, k, v at all 32 heads
    o_proj_input = 32 * tokens * 2 * 4096  # eager's output needs a contiguous copy
    # q, k, v repeated to all heads, the padding mask, output, logsumexp
    sdpa_saves = 32 * tokens * (2 * 3 * 4096 + 2 * 1024 + 2 * 4096 + 4 * 32)
    assert extra == scores + repeated_qkv + o_proj_input - sdpa_saves


def test_gradient_checkpointing_keeps_layer_inputs_and_one_layer() -> None:
    """Checkpointing keeps each layer's input (B x L x h) plus one layer recomputed in backward."""
    train = TrainSettings(micro_batch=4, seq_len=1024, grad_checkpointing=True)
    e = estimate(LLAMA, train)
    assert term(e, "layer inputs (checkpointed)") == 32 * 4 * 1024 * 4096 * 2
    assert term(e, "one layer recomputed") == 4 * 1024 * (217_224 - 2 * 1024)  # mask: L = 1024
    full = estimate(LLAMA, replace(train, grad_checkpointing=False))
    assert e.phase_bytes["backward start"] < full.phase_bytes["backward start"]


def test_logits_and_loss_buffers() -> None:
    """Logits are B x L x V in bf16; the unchunked loss adds an fp32 upcast and a log_softmax."""
    train = TrainSettings(micro_batch=16, seq_len=64)
    e = estimate(QWEN, train)
    btv = 16 * 64 * 151936
    assert term(e, "logits (B x L x V)") == 2 * btv
    assert term(e, "loss buffers fp32 (log_softmax, upcast)") == 2 * 4 * btv
    chunked = estimate(QWEN, replace(train, loss_chunk=16))
    assert term(chunked, "loss buffers fp32 (one chunk)") == 2 * 4 * btv // 4


def test_gkd_holds_teacher_logits_and_lora_costs_fp32_copies() -> None:
    """GKD adds the teacher's logits; LoRA dropout adds a copy and a mask of each target's input."""
    train = TrainSettings(method="gkd", micro_batch=2, seq_len=128, lora_rank=8)
    e = estimate(QWEN, train)
    assert term(e, "teacher logits") == 2 * 2 * 128 * 151936
    with_dropout = dict(layer_saved(QWEN, replace(train, lora_dropout=0.1)))
    assert with_dropout["LoRA q_proj dropout output + mask"] == 2560 * (4 + 1)
    without = dict(layer_saved(QWEN, train))
    assert without["LoRA q_proj fp32 input"] == 2560 * 4  # bf16 activations, fp32 adapters
    lora = estimate(QWEN, replace(train, method="lora"))
    assert "teacher logits" not in {t.name for t in lora.terms}


def test_cuda_context_only_on_cuda_and_peak_is_one_phase() -> None:
    """The CUDA context counts on a GPU only, and the peak is the largest phase, not the sum."""
    cuda = estimate(QWEN, TrainSettings(micro_batch=4, seq_len=256))
    cpu = estimate(QWEN, TrainSettings(micro_batch=4, seq_len=256, device="cpu"))
    assert term(cuda, "CUDA context") == int(CUDA_CONTEXT_GB * GB)
    assert "CUDA context" not in {t.name for t in cpu.terms}
    assert cpu.peak_bytes == max(cpu.phase_bytes.values())
    assert cpu.peak_bytes < sum(t.bytes for t in cpu.terms)
    assert cpu.dominant in cpu.at_peak()


def test_suggest_fit_keeps_the_effective_batch() -> None:
    """The suggestion is the largest micro-batch that fits, grad_accum raised to keep the batch."""
    train = TrainSettings(micro_batch=16, grad_accum=2, seq_len=2048, master_fp32=True)
    gpu = 220.0
    assert estimate(LLAMA, train).peak_gb > gpu
    change = suggest_fit(LLAMA, train, gpu)
    mb = change["micro_batch"]
    assert mb * change["grad_accum"] == 32
    assert estimate(LLAMA, replace(train, micro_batch=mb, grad_accum=32 // mb)).peak_gb <= gpu
    bigger = [b for b in range(mb + 1, 16) if 32 % b == 0]
    for b in bigger:  # no larger divisor of the batch fits
        assert estimate(LLAMA, replace(train, micro_batch=b, grad_accum=32 // b)).peak_gb > gpu


def test_suggest_fit_falls_back_to_seq_len_then_nothing() -> None:
    """When micro-batch 1 is too big a shorter sequence is suggested; {} when even that fails."""
    train = TrainSettings(micro_batch=2, seq_len=32768, device="cpu")
    one = estimate(LLAMA, replace(train, micro_batch=1, grad_accum=2)).peak_gb
    change = suggest_fit(LLAMA, train, one - 5)
    assert change["micro_batch"] == 1 and change["grad_accum"] == 2
    assert 32768 // 4 <= change["seq_len"] < 32768
    assert suggest_fit(LLAMA, train, 10.0) == {}  # the weights alone need 16 GB


def test_model_config_errors_name_file_and_field(tmp_path: Path) -> None:
    """A config.json without hidden_size, or not JSON, is a one-line error naming file and field."""
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({**LLAMA3_8B, "hidden_size": None}))
    with pytest.raises(ModelConfigError, match=r"config\.json: field 'hidden_size'"):
        load_model_config(str(tmp_path))
    bad.write_text('{"hidden_size": 4096,\n oops}')
    with pytest.raises(ModelConfigError, match=r"config\.json:2: not valid JSON"):
        load_model_config(str(bad))
    with pytest.raises(ModelConfigError, match=r"no config\.json"):
        load_model_config(str(tmp_path / "nowhere"))


def test_tiny_is_the_trainers_config() -> None:
    """`tiny` reads trainer/tiny_config.json by path (no import of the trainer)."""
    cfg = load_model_config("tiny")
    raw = json.loads(TINY_CONFIG.read_text())
    assert (cfg.hidden, cfg.vocab, cfg.tied) == (raw["hidden_size"], raw["vocab_size"], True)


def recipe(tmp_path: Path, body: str) -> object:
    (tmp_path / "m").mkdir(exist_ok=True)
    (tmp_path / "m" / "config.json").write_text(json.dumps(LLAMA3_8B))
    text = f"name: t\nbase_weights: {tmp_path / 'm'}\n{body}"
    return recipe_from_yaml(text, "t.yaml")


def test_hf_trainer_names_are_read(tmp_path: Path) -> None:
    """A recipe in TrainingArguments names (bf16, optim, per_device_train_batch_size) is read."""
    r = recipe(
        tmp_path,
        "command: [python, train.py]\nargs:\n  model_name_or_path: '{base_weights}'\n"
        "  per_device_train_batch_size: 4\n  gradient_accumulation_steps: 8\n"
        "  max_seq_length: 1024\n  bf16: true\n  optim: adamw_bnb_8bit\n"
        "  gradient_checkpointing: true\n",
    )
    cfg, train = recipe_inputs(r)
    assert cfg.hidden == 4096
    assert (train.micro_batch, train.grad_accum, train.seq_len) == (4, 8, 1024)
    assert (train.weights_dtype, train.master_fp32, train.optimizer) == ("bf16", True, "adamw_8bit")
    assert train.grad_checkpointing and train.loss_chunk == 0


def test_reference_trainer_names_are_read(tmp_path: Path) -> None:
    """The reference trainer's args (method, lora_targets all-linear, dtype) are read."""
    r = recipe(
        tmp_path,
        "command: [python, -m, trainer]\nargs:\n  model: '{base_weights}'\n  method: lora\n"
        "  micro_batch: 2\n  seq_len: 512\n  dtype: bf16\n  lora_rank: 32\n"
        "  lora_targets: all-linear\n",
    )
    _, train = recipe_inputs(r)
    assert (train.method, train.lora_rank, len(train.lora_targets)) == ("lora", 32, 7)
    assert (train.weights_dtype, train.compute_dtype) == ("bf16", "bf16")
    assert train.loss_chunk == 256 and train.logits_kept


def test_bad_settings_name_the_field(tmp_path: Path) -> None:
    """An unknown method or a non-number micro-batch is an EstimateError naming the arg."""
    r = recipe(tmp_path, "command: [python, -m, trainer]\nargs: {model: tiny, method: ppo}\n")
    with pytest.raises(EstimateError, match=r"args\.method"):
        recipe_inputs(r)
    r = recipe(tmp_path, "command: [python, -m, trainer]\nargs: {model: tiny, micro_batch: lots}\n")
    with pytest.raises(EstimateError, match=r"args\.micro_batch"):
        recipe_inputs(r)


def test_preflight_verdicts(tmp_path: Path) -> None:
    """Preflight refuses what does not fit (with a suggestion), warns near the limit, and gives
    no verdict when the card is unknown."""
    body = (
        "command: [python, train.py]\nargs:\n  model_name_or_path: '{base_weights}'\n"
        "  per_device_train_batch_size: 8\n  max_seq_length: 2048\n  bf16: true\n"
    )
    r = recipe(tmp_path, body)
    unknown = preflight(r)
    assert unknown.fits and unknown.gpu_gb is None and "card memory unknown" in unknown.report
    small = preflight(r, gpu_gb=220)
    assert not small.fits and "does NOT fit" in small.report
    assert small.suggestion and "per_device_train_batch_size" in small.suggestion
    near = preflight(r, gpu_gb=unknown.peak_gb / 0.95)
    assert near.fits and near.near_limit


def test_suggest_adjustment_after_oom_uses_the_recipes_names(tmp_path: Path) -> None:
    """After an oom the adjustment lowers the micro-batch under the recipe's own arg names."""
    body = (
        "command: [python, train.py]\nargs:\n  model_name_or_path: '{base_weights}'\n"
        "  per_device_train_batch_size: 8\n  gradient_accumulation_steps: 2\n"
        "  max_seq_length: 2048\n  bf16: true\n"
    )
    change = suggest_adjustment(recipe(tmp_path, body), "oom")
    assert change["per_device_train_batch_size"] < 8
    assert change["per_device_train_batch_size"] * change["gradient_accumulation_steps"] == 16


def test_chunked_loss_backward_holds_one_gradient_and_one_chunk() -> None:
    """With several loss chunks the loss's backward holds the logits' gradient (bf16, once) and
    one chunk's fp32 buffers (CE: a copy and its softmax), not three full-size gradients."""
    one = TrainSettings(micro_batch=8, seq_len=257, loss_chunk=256, device="cpu")
    many = replace(one, loss_chunk=64)
    name = "loss backward (logits' gradient + one chunk fp32)"
    full = 2 * 8 * 257 * 151936  # bf16 B x L x V
    assert term(estimate(QWEN, one), name) == 2 * 4 * 8 * 256 * 151936
    assert term(estimate(QWEN, many), name) == full + 2 * 4 * 8 * 64 * 151936
    gkd = estimate(QWEN, replace(many, method="gkd"))
    assert term(gkd, name) == full + 12 * 4 * 8 * 64 * 151936


def test_moe_parameters_count_every_expert() -> None:
    """Qwen3-30B-A3B (built in): 128 experts of 3 x 2048 x 768 per layer and a router: 30.53B."""
    cfg = load_model_config("qwen/qwen3-30b-a3b")
    layer = 18_874_368 + 128 * 3 * 2048 * 768 + 2048 * 128 + 2 * 2048 + 2 * 128
    assert count_params(cfg).total == 48 * layer + 2 * 151936 * 2048 + 2048 == 30_532_122_624


def test_unknown_model_names_the_built_in_shapes() -> None:
    """A model that is neither a file nor a known name says which names are built in."""
    with pytest.raises(ModelConfigError, match=r"Qwen/Qwen3-4B"):
        load_model_config("/models/Nothing-Here")


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).resolve().parents[2] / "recipes").rglob("*.yaml")), ids=str
)
def test_shipped_recipes_estimate_or_say_why(path: Path) -> None:
    """Every shipped recipe either gets an estimate or a one-line reason (no traceback)."""
    from supervisor.recipe.model import load_recipe

    r = load_recipe(path)
    if not r.preflight.enabled:
        return
    try:
        result = preflight(r)
    except EstimateError as exc:
        assert "\n" not in str(exc) and "config.json" in str(exc)
    else:
        assert result.peak_gb > 0 and "dominant term" in result.report


def test_gkd_sft_alpha_on_the_same_logits_costs_nothing_more() -> None:
    """GKD's sft_alpha cross-entropy shares the JSD's backward (one logits' gradient): on the
    data's own responses the estimate is the same as without it."""
    train = TrainSettings(method="gkd", micro_batch=4, seq_len=384, loss_chunk=128)
    plain = estimate(QWEN, train)
    with_ce = estimate(QWEN, replace(train, sft_alpha=1.0))
    assert with_ce.peak_bytes == plain.peak_bytes and with_ce.phase_bytes == plain.phase_bytes
    assert estimate(QWEN, replace(train, on_policy=True)).peak_bytes == plain.peak_bytes


def test_gkd_on_policy_with_sft_alpha_adds_the_data_forward() -> None:
    """On sampled responses the sft_alpha cross-entropy needs a second student forward on the
    data: its activations, final norm and logits are alive until its backward, which runs
    before the JSD's (so the loss backward is the larger of the CE's beside it and the JSD's)."""
    train = TrainSettings(method="gkd", micro_batch=4, seq_len=384, loss_chunk=128, device="cpu")
    both = replace(train, on_policy=True, sft_alpha=0.5)
    e = estimate(QWEN, both)
    btv = 4 * 384 * 151936
    second = term(e, "student forward on the data")
    assert second == term(e, "activations") + term(e, "final norm") + 2 * btv
    plain = estimate(QWEN, train)
    assert e.phase_bytes["forward end"] == plain.phase_bytes["forward end"] + second
    per_chunk = 4 * 128 * 151936 * 4
    ce_backward = 2 * btv + 2 * per_chunk  # the data logits' gradient (bf16) + CE's chunk
    jsd_backward = 2 * btv + 12 * per_chunk
    assert term(e, "loss backward") == max(ce_backward, jsd_backward - second)
    assert e.peak_bytes >= plain.peak_bytes
    off = replace(both, on_policy=False)
    assert estimate(QWEN, off).peak_bytes == plain.peak_bytes


def test_autocast_over_fp32_weights_keeps_an_fp32_residual_and_a_cast_per_linear() -> None:
    """bf16 autocast over fp32 weights (the CPU, or a float32 checkpoint): the residual stream
    and the norms' outputs stay fp32, and q, k, v (gate, up) each save their own bf16 cast of
    the norm's output; LoRA's lora_A saves a bf16 cast of its input and gives a bf16 output."""
    h, q, inter, heads = 4096, 4096, 14336, 32
    train = TrainSettings(micro_batch=1, seq_len=2048, weights_dtype="fp32")
    by_hand = (
        2 * (4 * h + 4)  # the two RMSNorm inputs in fp32 (+ rsqrt)
        + 2 * 4 * h  # their normalised outputs, fp32 like the residual
        + (3 + 2) * 2 * h  # a bf16 cast of the norm's output per linear that reads it
        + 2 * 3 * q  # q, k, v at every head (a padded batch)
        + 2 * 2048  # SDPA's mask
        + 2 * q
        + 4 * heads
        + 3 * 2 * inter
        + 2 * inter
    )
    assert sum(b for _, b in layer_saved(LLAMA, train)) == by_hand
    fp32 = replace(train, compute_dtype="fp32")  # no autocast: one fp32 output per norm
    saved = dict(layer_saved(LLAMA, fp32))
    assert saved["attn norm output"] == saved["attn norm normalised"] == 4 * h
    lora = replace(train, method="lora", lora_targets=("q_proj", "o_proj"))
    lora_saved = dict(layer_saved(LLAMA, lora))
    assert lora_saved["LoRA q_proj 16-bit cast of the input"] == 2 * h
    assert lora_saved["LoRA o_proj lora_A output"] == 2 * 8
    bf16_weights = dict(layer_saved(LLAMA, replace(lora, weights_dtype="bf16")))
    assert bf16_weights["LoRA q_proj fp32 input"] == 4 * h  # PEFT's fp32 copy, no autocast


def test_entropy_metric_holds_three_fp32_chunks_whatever_the_logits_dtype() -> None:
    """The trainer's entropy metric holds a chunk's log_softmax, its exp and their product; the
    fp32 copy of bf16 logits is freed before exp, so bf16 costs no fourth buffer."""
    train = TrainSettings(micro_batch=4, seq_len=256, loss_chunk=64, entropy_chunk=64)
    name = "loss buffers fp32 (one chunk or the entropy metric's)"
    for dtype in ("bf16", "fp32"):
        e = estimate(LLAMA, replace(train, weights_dtype=dtype, compute_dtype=dtype))
        assert term(e, name) == 12 * 4 * 64 * 128256


def test_gkd_settings_are_read_from_the_reference_trainers_args(tmp_path: Path) -> None:
    """sft_alpha and lmbda (the trainer's default 0.5: on-policy) reach the estimate."""
    base = "command: [python, -m, trainer]\nargs:\n  model: tiny\n  method: gkd\n"
    _, default = recipe_inputs(recipe(tmp_path, base))
    assert default.on_policy and default.sft_alpha == 0.0
    _, off = recipe_inputs(recipe(tmp_path, base + "  lmbda: 0\n  sft_alpha: 1.0\n"))
    assert not off.on_policy and off.sft_alpha == 1.0
    with pytest.raises(EstimateError, match=r"args\.sft_alpha"):
        recipe_inputs(recipe(tmp_path, base + "  sft_alpha: lots\n"))
