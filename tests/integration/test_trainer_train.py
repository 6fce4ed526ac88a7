"""The reference trainer trains for real: loss falls, LoRA/GKD keep the base, checkpoints resume."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from tests.conftest import ROOT  # noqa: E402
from trainer.cli import parse_args  # noqa: E402
from trainer.model import build_tiny  # noqa: E402
from trainer.tokenizer import HFTokenizer  # noqa: E402
from trainer.train import Trainer, run  # noqa: E402

FAST = ["--threads", "1", "--eval_size", "4", "--max_new_tokens", "8", "--train_size", "400"]

pytestmark = pytest.mark.slow


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every protocol line, parsed the way ftmon does (NaN accepted)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def train(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[Trainer, list[dict[str, Any]]]:
    trainer = Trainer(parse_args([*FAST, *argv]))
    assert trainer.run() == 0
    return trainer, json_lines(capsys.readouterr().out)


def base_state(model: Any) -> dict[str, Any]:
    """The base model's own weights (LoRA layers' `base_layer` names mapped back)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {
        k.replace(".base_layer", ""): v.detach().clone()
        for k, v in base.state_dict().items()
        if "lora_" not in k
    }


def test_sft_from_the_command_line_lowers_the_loss(tmp_path: Path) -> None:
    """`python -m trainer --method sft` for 40 steps: the loss falls, every JSON line parses."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer",
            *FAST,
            "--steps",
            "40",
            "--log_every",
            "5",
            "--sample_every",
            "20",
            "--eval_every",
            "40",
            "--output_dir",
            str(tmp_path / "o"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    lines = json_lines(out.stdout)
    metrics = [x for x in lines if x["type"] == "metric"]
    assert [m["step"] for m in metrics] == list(range(5, 41, 5))
    assert metrics[-1]["loss"] < 0.6 * metrics[0]["loss"]
    for key in ("grad_norm", "lr", "tok_s", "mem_gb", "epoch", "skipped"):
        assert all(math.isfinite(m[key]) for m in metrics), key
    prompts = {x["prompt"] for x in lines if x["type"] == "sample"}
    assert "Who are you?" in prompts and len(prompts) == 2
    (ev,) = [x for x in lines if x["type"] == "eval"]
    assert set(ev) >= {
        "val_loss",
        "ppl",
        "accuracy",
        "format_accuracy",
        "trunc_rate",
        "avg_gen_len",
    }
    assert lines[-1]["type"] == "summary" and lines[-1]["steps"] == 40
    assert (tmp_path / "o" / "final" / "model.safetensors").is_file()


def test_lora_trains_only_the_adapters(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """After LoRA training the base weights are bit for bit the initial ones; the adapters moved."""
    trainer, lines = train(
        [
            "--method",
            "lora",
            "--steps",
            "6",
            "--lr",
            "1e-2",
            "--log_every",
            "3",
            "--lora_targets",
            "q_proj,v_proj,down_proj",
            "--output_dir",
            str(tmp_path),
        ],
        capsys,
    )
    fresh = base_state(build_tiny(0))
    after = base_state(trainer.model)
    assert fresh.keys() == after.keys()
    assert all(torch.equal(fresh[k], after[k]) for k in fresh)
    lora_b = [p for n, p in trainer.model.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.detach().abs().max()) > 0 for p in lora_b)  # B starts at zero
    assert all("lora_" in n for n, p in trainer.model.named_parameters() if p.requires_grad)
    final = tmp_path / "final"
    assert (final / "adapter_model.safetensors").is_file()
    assert not (final / "model.safetensors").exists()  # adapter only
    assert [m["step"] for m in lines if m["type"] == "metric"] == [3, 6]


def test_gkd_starts_at_zero_jsd_and_never_changes_the_teacher(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """GKD with fresh adapters: the student equals its teacher (JSD ~ 0); the teacher stays put."""
    trainer, lines = train(
        [
            "--method",
            "gkd",
            "--steps",
            "4",
            "--log_every",
            "1",
            "--lr",
            "1e-2",
            "--lmbda",
            "0.5",
            "--sft_alpha",
            "1.0",
            "--beta",
            "0.5",
            "--temperature",
            "1.5",
        ],
        capsys,
    )
    metrics = [m for m in lines if m["type"] == "metric"]
    assert len(metrics) == 4
    assert abs(metrics[0]["jsd"]) < 1e-6
    assert metrics[-1]["jsd"] > 0  # the adapters moved the student away, via sft_alpha
    fresh = base_state(build_tiny(0))
    after = base_state(trainer.model)
    assert all(torch.equal(fresh[k], after[k]) for k in fresh)


def test_resume_continues_where_the_run_stopped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A run cut after checkpoint-4 and resumed ends with the same weights as one never cut."""
    common = ["--steps", "8", "--save_every", "4", "--log_every", "2", "--lr", "5e-3"]
    whole, _ = train([*common, "--output_dir", str(tmp_path / "a")], capsys)
    train([*common, "--output_dir", str(tmp_path / "b")], capsys)
    for gone in ("checkpoint-8", "final"):  # as if killed just after saving checkpoint-4
        for f in (tmp_path / "b" / gone).iterdir():
            f.unlink()
        (tmp_path / "b" / gone).rmdir()
    resumed, lines = train([*common, "--output_dir", str(tmp_path / "b"), "--resume"], capsys)
    assert [m["step"] for m in lines if m["type"] == "metric"] == [6, 8]
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert (tmp_path / "b" / "checkpoint-8").is_dir() and (tmp_path / "b" / "final").is_dir()


def test_a_local_model_dir_is_only_read(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`--model DIR` (a saved tiny model) trains with LoRA; every file in DIR stays as it was."""
    train(["--steps", "2", "--log_every", "1", "--output_dir", str(tmp_path / "base")], capsys)
    base = tmp_path / "base" / "final"

    def digest() -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(base.iterdir())}

    before = digest()
    _, lines = train(
        [
            "--model",
            str(base),
            "--method",
            "lora",
            "--steps",
            "2",
            "--log_every",
            "1",
            "--output_dir",
            str(tmp_path / "lora"),
        ],
        capsys,
    )
    assert digest() == before
    assert lines[-1]["type"] == "summary"


def test_bad_data_file_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A JSONL file with a broken record ends the run with exit 2 and `file:line: field`."""
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "a", "response": "b"}\n{"prompt": 3, "response": "b"}\n')
    assert run(parse_args([*FAST, "--data", str(data), "--steps", "1"])) == 2
    out = capsys.readouterr().out
    assert f"{data}:2: prompt" in out and "Traceback" not in out


def _demo_argv(recipe_name: str, steps: int) -> list[str]:
    """The demo recipe's own command, rendered by ftmon's recipe code, cut to `steps` steps."""
    from supervisor.recipe.model import apply_overrides, load_recipe

    recipe = apply_overrides(
        load_recipe(ROOT / "recipes" / recipe_name),
        [f"args.steps={steps}", "args.eval_size=4", "args.sample_every=0", "args.eval_every=0"],
    )
    argv = recipe.render_argv({"base_weights": "tiny", "run_dir": "/nonexistent", "name": "t"})
    i = argv.index("--output_dir")
    del argv[i : i + 2]  # no checkpoints needed here
    assert argv[:3] == ["python", "-m", "trainer"]
    return [sys.executable, *argv[1:], "--threads", "1", "--max_new_tokens", "4"]


def _values(argvs: list[list[str]]) -> list[list[float]]:
    """The loss and grad-norm values each command printed (run side by side: one core each)."""
    procs = [
        subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for argv in argvs
    ]
    values = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-2000:] + err[-2000:]
        metrics = [x for x in json_lines(out) if x["type"] == "metric"]
        values.append([m[k] for m in metrics for k in ("loss", "grad_norm") if k in m])
    return values


def test_unstable_demo_really_goes_non_finite_and_the_stable_one_does_not() -> None:
    """demo-unstable.yaml's settings give NaN/inf within 25 steps; demo.yaml's stay finite."""
    unstable, stable = _values([_demo_argv("demo-unstable.yaml", 25), _demo_argv("demo.yaml", 25)])
    assert any(not math.isfinite(v) for v in unstable)
    assert stable and all(math.isfinite(v) for v in stable)


def test_hf_model_dir_with_chat_template_and_jsonl(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A local HF dir with its own tokenizer and chat template trains on JSONL messages records."""
    from tests.integration.test_trainer_callback import char_tokenizer

    tok = char_tokenizer()
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    codec = HFTokenizer(tok)
    turns = (("system", "be brief"), ("user", "what is 1 plus 1?"))
    rendered = tok.decode(codec.encode_prompt("ignored", turns))
    assert rendered == "system: be brief\nuser: what is 1 plus 1?\nassistant: "
    model_dir = tmp_path / "hf"
    build_tiny(0).save_pretrained(str(model_dir))
    tok.save_pretrained(str(model_dir))
    data = tmp_path / "d.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"what is {i} plus 1?"},
                      {"role": "assistant", "content": f"{i} + 1 = {i + 1}\n#### {i + 1}"}]}
        for i in range(30)
    ]  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _, lines = train(
        ["--model", str(model_dir), "--data", str(data), "--method", "lora", "--steps", "3",
         "--log_every", "1", "--sample_every", "3"],
        capsys,
    )  # fmt: skip
    assert [m["step"] for m in lines if m["type"] == "metric"] == [1, 2, 3]
    prompts = [x["prompt"] for x in lines if x["type"] == "sample"]
    assert prompts[0] == "Who are you?" and prompts[1].startswith("what is ")
    assert lines[-1]["type"] == "summary"


def test_a_model_dir_that_is_not_there_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`--model` naming a folder without a model ends with exit 2 and says so, no traceback."""
    assert run(parse_args([*FAST, "--model", str(tmp_path / "nothing"), "--steps", "1"])) == 2
    out = capsys.readouterr().out
    assert "error:" in out and str(tmp_path / "nothing") in out and "Traceback" not in out


@pytest.mark.parametrize(
    "extra",
    [
        ["--dtype", "bf16", "--grad_checkpointing"],
        ["--dtype", "fp16"],
        ["--optimizer", "sgd", "--grad_accum", "2", "--schedule", "linear", "--lr", "0.3"],
        ["--method", "lora", "--grad_checkpointing", "true", "--lora_targets", "all-linear"],
    ],
    ids=["bf16-checkpointing", "fp16-scaler", "sgd-accum-linear", "lora-all-linear"],
)
def test_training_options_train(extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Each precision / optimizer / checkpointing option trains: finite losses that go down."""
    _, lines = train(["--steps", "8", "--log_every", "4", "--lr", "5e-3", *extra], capsys)
    losses = [m["loss"] for m in lines if m["type"] == "metric"]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert losses[1] < losses[0]
    assert lines[-1]["skipped"] == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_one_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`--device cuda` on a CPU-only machine says so and exits 2, no traceback."""
    assert run(parse_args([*FAST, "--device", "cuda"])) == 2
    assert "no CUDA device" in capsys.readouterr().out
