"""A decoder's shape, read from a Hugging Face `config.json`, and its parameters by kind.

The memory estimate (estimate.py) needs only the shape of the model, never its weights, so a
config.json read as JSON is enough: no torch, no transformers. Dense Llama-like decoders
(Llama, Qwen2/2.5/3, Mistral, Gemma-ish) and simple mixture-of-experts (Qwen3-MoE, Mixtral)
are understood; anything else still gets a count from the common keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# The reference trainer's tiny model, read by path: supervisor/ never imports trainer.
TINY_CONFIG = Path(__file__).resolve().parents[2] / "trainer" / "tiny_config.json"

# The linear layers of one decoder layer, by the names PEFT targets.
ATTENTION_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_LINEARS = ("gate_proj", "up_proj", "down_proj")
ALL_LINEARS = ATTENTION_LINEARS + MLP_LINEARS


# Public shapes of a few common models (their config.json keys), so that a preflight works
# before the weights are on this machine: `preflight.model: Qwen/Qwen3-4B`.
_QWEN3 = {"model_type": "qwen3", "vocab_size": 151936, "head_dim": 128, "torch_dtype": "bfloat16"}
KNOWN_CONFIGS: dict[str, dict[str, object]] = {
    "Qwen/Qwen3-4B": {**_QWEN3, "hidden_size": 2560, "intermediate_size": 9728,
                      "num_hidden_layers": 36, "num_attention_heads": 32,
                      "num_key_value_heads": 8, "tie_word_embeddings": True},
    "Qwen/Qwen3-8B": {**_QWEN3, "hidden_size": 4096, "intermediate_size": 12288,
                      "num_hidden_layers": 36, "num_attention_heads": 32,
                      "num_key_value_heads": 8, "tie_word_embeddings": False},
    "Qwen/Qwen3-30B-A3B": {**_QWEN3, "model_type": "qwen3_moe", "hidden_size": 2048,
                           "intermediate_size": 6144, "moe_intermediate_size": 768,
                           "num_experts": 128, "num_experts_per_tok": 8,
                           "num_hidden_layers": 48, "num_attention_heads": 32,
                           "num_key_value_heads": 4, "tie_word_embeddings": False},
    "meta-llama/Meta-Llama-3-8B": {"model_type": "llama", "vocab_size": 128256,
                                   "hidden_size": 4096, "intermediate_size": 14336,
                                   "num_hidden_layers": 32, "num_attention_heads": 32,
                                   "num_key_value_heads": 8, "tie_word_embeddings": False,
                                   "torch_dtype": "bfloat16"},
}  # fmt: skip


class ModelConfigError(ValueError):
    """A config.json that cannot be read or lacks a key the estimate needs."""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The shape of a decoder-only transformer, as far as memory is concerned."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False  # Qwen3: an RMSNorm of head_dim on q and on k
    experts: int = 0  # 0 = dense MLP
    experts_per_token: int = 0
    expert_intermediate: int = 0
    name: str = ""

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_shape(self, name: str) -> tuple[int, int]:
        """(in_features, out_features) of one linear layer of a decoder layer (dense MLP)."""
        mlp = self.expert_intermediate if self.experts else self.intermediate
        shapes = {
            "q_proj": (self.hidden, self.q_dim),
            "k_proj": (self.hidden, self.kv_dim),
            "v_proj": (self.hidden, self.kv_dim),
            "o_proj": (self.q_dim, self.hidden),
            "gate_proj": (self.hidden, mlp),
            "up_proj": (self.hidden, mlp),
            "down_proj": (mlp, self.hidden),
        }
        return shapes[name]

    def linear_count(self, name: str) -> int:
        """How many copies of that linear one layer holds (one per expert in an MoE MLP)."""
        if self.experts and name in MLP_LINEARS:
            return self.experts
        return 1


@dataclass(frozen=True, slots=True)
class ParamCounts:
    """Parameters by kind. `head` is 0 when the output projection is tied to the embedding."""

    embedding: int
    attention: int
    mlp: int
    norms: int
    head: int
    router: int = 0

    @property
    def total(self) -> int:
        return self.embedding + self.attention + self.mlp + self.norms + self.head + self.router

    @property
    def linears(self) -> int:
        """The parameters of the decoder layers' linear layers (what 4-bit quantisation packs)."""
        return self.attention + self.mlp + self.router

    def as_dict(self) -> dict[str, int]:
        return {
            "embedding": self.embedding,
            "attention": self.attention,
            "mlp": self.mlp,
            "norms": self.norms,
            "head": self.head,
            "router": self.router,
            "total": self.total,
        }


def count_params(cfg: ModelConfig) -> ParamCounts:
    """Count the parameters of each kind, exactly as the Hugging Face modules allocate them."""
    attention = 0
    for name in ATTENTION_LINEARS:
        fan_in, fan_out = cfg.linear_shape(name)
        attention += fan_in * fan_out
    if cfg.qkv_bias:
        attention += cfg.q_dim + 2 * cfg.kv_dim
    if cfg.o_bias:
        attention += cfg.hidden
    mlp = sum(
        cfg.linear_count(n) * cfg.linear_shape(n)[0] * cfg.linear_shape(n)[1] for n in MLP_LINEARS
    )
    router = cfg.hidden * cfg.experts if cfg.experts else 0
    norms = 2 * cfg.hidden + (2 * cfg.head_dim if cfg.qk_norm else 0)
    return ParamCounts(
        embedding=cfg.vocab * cfg.hidden,
        attention=attention * cfg.layers,
        mlp=mlp * cfg.layers,
        norms=norms * cfg.layers + cfg.hidden,  # + the final norm
        head=0 if cfg.tied else cfg.vocab * cfg.hidden,
        router=router * cfg.layers,
    )


def _int(raw: dict[str, object], key: str, where: str) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ModelConfigError(f"{where}: field {key!r} must be a positive integer, got {value!r}")
    return value


def config_from_dict(raw: dict[str, object], where: str = "config.json") -> ModelConfig:
    """Read the keys of a Hugging Face config.json; `where` names the file in error messages."""
    if isinstance(raw.get("text_config"), dict):  # multimodal wrappers keep the decoder inside
        raw = {**raw["text_config"], "model_type": raw.get("model_type", "")}  # type: ignore[dict-item]
    hidden = _int(raw, "hidden_size", where)
    heads = _int(raw, "num_attention_heads", where)
    kv_heads = raw.get("num_key_value_heads") or heads
    head_dim = raw.get("head_dim") or hidden // heads
    model_type = str(raw.get("model_type", ""))
    experts = int(raw.get("num_experts") or raw.get("num_local_experts") or 0)  # type: ignore[call-overload]
    cfg_raw = {**raw, "num_key_value_heads": kv_heads, "head_dim": head_dim}
    intermediate = _int(raw, "intermediate_size", where)
    expert_intermediate = int(raw.get("moe_intermediate_size") or intermediate)  # type: ignore[call-overload]
    return ModelConfig(
        hidden=hidden,
        intermediate=intermediate,
        layers=_int(raw, "num_hidden_layers", where),
        heads=heads,
        kv_heads=_int(cfg_raw, "num_key_value_heads", where),
        head_dim=_int(cfg_raw, "head_dim", where),
        vocab=_int(raw, "vocab_size", where),
        # Llama's and Qwen's configs default to untied when the key is missing.
        tied=bool(raw.get("tie_word_embeddings", False)),
        # Qwen2 hard-codes a bias on q/k/v; others say so with `attention_bias`.
        qkv_bias=model_type == "qwen2" or bool(raw.get("attention_bias", False)),
        o_bias=bool(raw.get("attention_bias", False)),
        qk_norm=model_type.startswith("qwen3"),
        experts=experts,
        experts_per_token=int(raw.get("num_experts_per_tok") or 0) if experts else 0,  # type: ignore[call-overload]
        expert_intermediate=expert_intermediate if experts else 0,
        name=str(raw.get("_name_or_path") or model_type),
    )


def _hf_cache_config(model_id: str) -> Path | None:
    """config.json of a hub id (`Qwen/Qwen3-4B`) already in the local Hugging Face cache."""
    import os

    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    snapshots = home / "hub" / f"models--{model_id.replace('/', '--')}" / "snapshots"
    found = sorted(snapshots.glob("*/config.json")) if snapshots.is_dir() else []
    return found[-1] if found else None


def resolve_config_path(model: str, base_dir: Path | None = None) -> Path:
    """Where the config.json of `model` is: "tiny", a directory, a file, or a cached hub id."""
    if model == "tiny":
        return TINY_CONFIG
    path = Path(model).expanduser()
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        path = base_dir / path
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return path
    if "/" in model and not model.startswith((".", "/", "~")):
        cached = _hf_cache_config(model)
        if cached is not None:
            return cached
    raise ModelConfigError(
        f"model {model!r}: no config.json found there; set preflight.model to a config.json path"
    )


def known_config(model: str) -> dict[str, object] | None:
    """The built-in shape of a known hub id (`Qwen/Qwen3-4B`, any case), if there is one."""
    for name, raw in KNOWN_CONFIGS.items():
        if model.lower() == name.lower():
            return {**raw, "_name_or_path": name}
    return None


def load_raw_config(model: str, base_dir: Path | None = None) -> tuple[dict[str, object], str]:
    """The config.json dict of `model` and where it came from (a path or "built-in")."""
    try:
        path = resolve_config_path(model, base_dir)
    except ModelConfigError:
        raw = known_config(model)
        if raw is None:
            known = ", ".join(KNOWN_CONFIGS)
            raise ModelConfigError(
                f"model {model!r}: no config.json found there; set preflight.model to a "
                f"config.json path or one of {known}"
            ) from None
        return raw, "built-in"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ModelConfigError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(raw, dict):
        raise ModelConfigError(f"{path}: expected a JSON object")
    return raw, str(path)


def load_model_config(model: str, base_dir: Path | None = None) -> ModelConfig:
    """Load the ModelConfig of `model` (see resolve_config_path); errors name the file."""
    raw, where = load_raw_config(model, base_dir)
    return config_from_dict(raw, where=where)
