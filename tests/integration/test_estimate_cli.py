"""`ftmon estimate RECIPE`: the breakdown, the verdict, the suggestion and the exit codes."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import supervisor.estimate.preflight as est_mod
from tests.conftest import ROOT

QWEN3_4B = {
    "architectures": ["Qwen3ForCausalLM"],
    "model_type": "qwen3",
    "hidden_size": 2560,
    "intermediate_size": 9728,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
}


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine has no NVIDIA GPU: the card's size comes from the recipe or --gpu-gb."""
    monkeypatch.setattr(est_mod, "_nvml_total_gb", lambda: None)


def ftmon_here(*args: str) -> tuple[int, str, str]:
    """The console script's `main` in this process: (exit code, stdout, stderr)."""
    from tui.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def full_4b_recipe(tmp_path: Path) -> Path:
    """A Qwen3-4B full fine-tune of the reference trainer, fp32 weights, 104 GB VRAM limit."""
    model = tmp_path / "Qwen3-4B"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(QWEN3_4B))
    path = tmp_path / "qwen3-4b-full.yaml"
    path.write_text(
        f"name: qwen3-4b-full\nbase_weights: {model}\ncommand: [python, -m, trainer]\n"
        "args:\n  model: '{base_weights}'\n  method: sft\n  micro_batch: 16\n  seq_len: 64\n"
        "  dtype: bf16\n  lr: 2.0e-5\n"
        "watch:\n  vram: {limit_gb: 104}\n"
    )
    return path


def test_4b_full_finetune_names_its_dominant_term(tmp_path: Path) -> None:
    """At micro-batch 16 x 64 on 104 GB, the 4B full fine-tune's breakdown names the optimizer
    states as dominant at the optimizer step, and the console script exits 0 (it fits)."""
    recipe = full_4b_recipe(tmp_path)
    script = Path(sys.executable).parent / "ftmon"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "supervisor"]
    proc = subprocess.run(
        [*argv, "estimate", str(recipe)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "4.02B parameters" in out
    assert "at the optimizer step; dominant term: optimizer states (m + v)" in out
    assert "card: 104 GB (watch.vram.limit_gb): fits" in out
    for name in ("weights (fp32)", "gradients", "activations (36 layers)", "logits (B x L x V)"):
        assert name in out


def test_long_sequences_do_not_fit_and_the_suggestion_does(tmp_path: Path) -> None:
    """At length 2048 the activations dominate and it does not fit (exit 1); the suggested
    micro-batch keeps the effective batch and, applied with --set, fits (exit 0)."""
    recipe = str(full_4b_recipe(tmp_path))
    code, out, err = ftmon_here("estimate", recipe, "--set", "seq_len=2048", "--json")
    assert code == 1, err
    result = json.loads(out)
    assert result["fits"] is False and result["dominant"] == "activations (36 layers)"
    change = result["suggestion"]
    assert change["micro_batch"] < 16
    assert change["micro_batch"] * change["args.grad_accum"] == 16  # not in the recipe yet
    code, out, _ = ftmon_here("estimate", recipe, "--set", "seq_len=2048")
    said = next(line for line in out.splitlines() if line.startswith("fits with: "))
    assert f"--set +args.grad_accum={change['args.grad_accum']}" in said  # a new arg: `+`
    sets = said.removeprefix("fits with: ").split(" (same effective batch)")[0].split()
    code, out, err = ftmon_here("estimate", recipe, "--set", "seq_len=2048", *sets)
    assert code == 0, out + err
    assert "fits" in out


def test_table_shows_share_of_peak_and_near_limit_warning(tmp_path: Path) -> None:
    """The table gives each term's GB and share of the peak; near the card's size it warns."""
    recipe = str(full_4b_recipe(tmp_path))
    code, out, _ = ftmon_here("estimate", recipe, "--json")
    peak = json.loads(out)["peak_gb"]
    code, out, _ = ftmon_here("estimate", recipe, "--gpu-gb", f"{peak / 0.95:.2f}")
    assert code == 0
    assert "warning: the estimate is within 10% of the card" in out
    states = next(line for line in out.splitlines() if line.startswith("optimizer states"))
    assert states.split()[-2].endswith("%") or states.split()[-3].endswith("%")


def test_unknown_card_prints_the_estimate_without_a_verdict(tmp_path: Path) -> None:
    """With no --gpu-gb, no preflight.gpu_gb, no GPU and no vram limit: estimate only, exit 0."""
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "name: tiny-lora\ncommand: [python, -m, trainer]\n"
        "args: {model: tiny, method: lora, micro_batch: 8, seq_len: 64, device: cpu}\n"
    )
    code, out, _ = ftmon_here("estimate", str(path))
    assert code == 0
    assert "LoRA adapters fp32 (rank 8)" in out
    assert "card memory unknown" in out
    assert "CUDA context" not in out  # device: cpu


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("name: x\ncommand: [python, -m, trainer]\nargs: {model: /nowhere}\n", "no config.json"),
        ("name: x\ncommand: [python, -m, trainer]\nargs: {model: tiny, micro_batch: 0}\n",
         "args.micro_batch: must be 1 or more"),
        ("name: x\ncommand: python -m trainer\n", "must be an argv list"),
    ],
)  # fmt: skip
def test_bad_recipes_exit_2_with_one_line(tmp_path: Path, body: str, message: str) -> None:
    """A recipe that cannot be read or estimated exits 2 with a message naming the problem."""
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    code, _, err = ftmon_here("estimate", str(path))
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_bad_gpu_gb_is_a_usage_error(tmp_path: Path) -> None:
    """--gpu-gb 0 is refused as bad usage (exit 2)."""
    code, _, err = ftmon_here("estimate", str(full_4b_recipe(tmp_path)), "--gpu-gb", "0")
    assert code == 2 and "--gpu-gb" in err


def test_demo_recipe_is_estimated_for_the_cpu() -> None:
    """`ftmon estimate recipes/demo.yaml` on a machine with no GPU: the tiny model on the CPU,
    in MB, no CUDA context, no verdict (exit 0)."""
    code, out, err = ftmon_here("estimate", str(ROOT / "recipes" / "demo.yaml"))
    assert code == 0, err
    assert "820.7K parameters" in out and ", cpu" in out
    assert "CUDA context" not in out
    assert "dominant term: activations (4 layers)" in out
