"""Recipes: loading, the messages a bad recipe gets, overrides, flag rendering, YAML round trip."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from supervisor.recipe.model import (
    FlagStyle,
    Recipe,
    RecipeError,
    apply_overrides,
    is_secret,
    is_secret_arg,
    load_recipe,
    recipe_from_yaml,
    render_args,
)

GOOD = """\
name: sft-tiny
base_weights: /models/tiny
command: [python3, -m, trainer]
args:
  model: "{base_weights}"
  output_dir: "{run_dir}/out"
  lr: 2.0e-4
  micro_batch: 8
  grad_accum: 2
env: {OMP_NUM_THREADS: 2}
on:
  nan: {do: relaunch, adjust: {lr: "*0.5"}, max: 3}
  oom: {do: relaunch, adjust: {micro_batch: /2}, keep: [effective_batch]}
"""


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    return str(info.value).splitlines()


def test_good_recipe_loads_with_yaml_12_scalars(tmp_path: Path) -> None:
    """A plain recipe loads: `on:` is the policy (not YAML 1.1's True) and `1e-5` is a number."""
    recipe = load_recipe(write(tmp_path, GOOD.replace("2.0e-4", "1e-5")))
    assert recipe.args["lr"] == 1e-5
    assert recipe.on["nan"].adjust == {"lr": "*0.5"}
    assert recipe.env == {"OMP_NUM_THREADS": "2"}
    assert recipe.kill_grace_secs == 10


def test_three_typos_give_three_problems_with_lines(tmp_path: Path) -> None:
    """Three misspelt keys give three one-line messages, each with file, line, path and a hint."""
    text = GOOD.replace("base_weights: /models", "base_weight: /models")
    text = text.replace("  nan: {do: relaunch, adjust", "  nan: {do: relaunch, adjst")
    text += "kill_grace: 5\n"
    path = write(tmp_path, text)
    lines = problems_of(path)
    assert lines == [
        f"{path}:2: base_weight: unknown key; did you mean 'base_weights'?",
        f"{path}:12: on.nan.adjst: unknown key; did you mean 'adjust'?",
        f"{path}:14: kill_grace: unknown key; did you mean 'kill_grace_secs'?",
    ]


def test_wrong_type_names_field_line_and_value(tmp_path: Path) -> None:
    """A wrong type says which field, on which line, and what was given."""
    path = write(tmp_path, GOOD + "kill_grace_secs: ten\n")
    (line,) = problems_of(path)
    assert line.startswith(f"{path}:14: kill_grace_secs: Input should be a valid number")
    assert "(got 'ten')" in line


def test_invalid_yaml_gives_file_and_line(tmp_path: Path) -> None:
    """Broken YAML is one message with the file and the line, not a traceback."""
    path = write(tmp_path, "name: x\ncommand: [python3, -c\nargs: {a: 1}\n")
    (line,) = problems_of(path)
    assert line.startswith(f"{path}:3: invalid YAML")


def test_shell_string_command_is_refused_with_the_argv_to_write(tmp_path: Path) -> None:
    """`command: python train.py --x 1` is an error that shows the argv list to write instead."""
    path = write(tmp_path, "name: x\ncommand: python train.py --x 1\n")
    (line,) = problems_of(path)
    assert line == (
        f"{path}:2: command: must be an argv list, not a shell string; "
        "write it as [python, train.py, --x, '1']"
    )


def test_unknown_placeholder_and_unknown_rule(tmp_path: Path) -> None:
    """An unknown {placeholder} and a policy for a rule that does not exist are both reported."""
    text = GOOD.replace('"{run_dir}/out"', '"{rundir}/out"').replace("  oom:", "  oomm:")
    path = write(tmp_path, text)
    lines = problems_of(path)
    assert lines[0].startswith(f"{path}:6: args.output_dir: unknown placeholder {{rundir}}")
    assert lines[1].startswith(f"{path}:13: on.oomm: no rule is named 'oomm'; did you mean 'oom'?")


def test_cross_field_problems_have_lines(tmp_path: Path) -> None:
    """An adjust key that names nothing, and {base_weights} without base_weights, are reported."""
    text = GOOD.replace("base_weights: /models/tiny\n", "").replace("{lr:", "{lr2:")
    path = write(tmp_path, text)
    lines = problems_of(path)
    assert (
        lines[0] == f"{path}:1: base_weights: {{base_weights}} is used but base_weights is not set"
    )
    assert lines[1].startswith(f"{path}:11: on.nan.adjust.lr2: unknown key 'lr2'; did you mean")


def test_bad_adjust_op_and_policy_action(tmp_path: Path) -> None:
    """`adjust: {lr: "*half"}` and `do: explode` are each one problem on their own line."""
    text = GOOD.replace('"*0.5"', '"*half"').replace("oom: {do: relaunch", "oom: {do: explode")
    lines = problems_of(write(tmp_path, text))
    assert "on.nan.adjust.lr: '*half' is not an adjustment" in lines[0]
    assert ":13: on.oom.do: Input should be 'alert', 'pause', 'kill' or 'relaunch'" in lines[1]


def test_missing_fields_and_a_bad_adjust_shape(tmp_path: Path) -> None:
    """A missing field is named; `adjust: 5` points at `adjust`, not at pydantic's internals."""
    path = write(tmp_path, "args: {lr: 1}\non:\n  nan: {do: relaunch, adjust: 5}\n")
    assert problems_of(path) == [
        f"{path}:1: name: this field is required",
        f"{path}:1: command: this field is required",
        f"{path}:3: on.nan.adjust: Input should be a valid dictionary (got 5)",
    ]


def test_exit_policy_may_not_pause_or_kill(tmp_path: Path) -> None:
    """`on: {exit: {do: kill}}` is refused with why (the run has ended); relaunch is accepted."""
    (line,) = problems_of(write(tmp_path, GOOD + "  exit: {do: kill}\n"))
    assert ":14: on.exit.do: kill: the run has already ended when `exit` fires" in line
    recipe = load_recipe(write(tmp_path, GOOD + "  exit: {do: relaunch, max: 1}\n"))
    assert recipe.on["exit"].do == "relaunch"


def test_keep_effective_batch_needs_accumulation(tmp_path: Path) -> None:
    """`keep: [effective_batch]` without an accumulation arg is an error naming the keys sought."""
    (line,) = problems_of(write(tmp_path, GOOD.replace("  grad_accum: 2\n", "")))
    assert "on.oom.keep: needs a gradient accumulation in args (grad_accum, gradient_acc" in line


def test_duplicate_key_and_bad_name(tmp_path: Path) -> None:
    """A key given twice and a name with a space are reported, not silently accepted."""
    text = GOOD.replace("name: sft-tiny", "name: sft tiny") + "env: {A: b}\n"
    lines = problems_of(write(tmp_path, text))
    assert any(":1: name: 'sft tiny': a name is" in x for x in lines)
    assert any(":14: env: this key is given twice" in x for x in lines)


def test_not_a_mapping_and_unreadable_file(tmp_path: Path) -> None:
    """A YAML list, an empty file and a missing file each give one clear line."""
    assert "a recipe is a mapping" in problems_of(write(tmp_path, "- a\n- b\n"))[0]
    assert "got nothing" in problems_of(write(tmp_path, "", "empty.yaml"))[0]
    assert "cannot read" in problems_of(tmp_path / "missing.yaml")[0]


def test_literal_braces_render_as_single_braces(tmp_path: Path) -> None:
    """`{{` and `}}` give literal braces, so a JSON argument can be passed."""
    recipe = load_recipe(write(tmp_path, 'name: x\ncommand: [echo, \'{{"a": "{name}"}}\']\n'))
    assert recipe.render_argv({"name": "x"}) == ["echo", '{"a": "x"}']


def test_mapping_arg_is_passed_as_one_json_argument() -> None:
    """A mapping value (HF's `lr_scheduler_kwargs`) becomes one JSON argument, not a problem."""
    recipe = recipe_from_yaml(
        "name: r\ncommand: [x]\nargs:\n  lr_scheduler_kwargs: {min_lr: 1.0e-6, warm: [1, 2]}\n"
    )
    assert recipe.render_argv({}) == [
        "x",
        "--lr_scheduler_kwargs",
        '{"min_lr": 1e-06, "warm": [1, 2]}',
    ]
    with pytest.raises(RecipeError, match=r"args\.bad: a list of flag values holds plain values"):
        recipe_from_yaml("name: r\ncommand: [x]\nargs:\n  bad: [[1]]\n")


# ---------------------------------------------------------------- overrides


def test_overrides_bare_dotted_and_typed() -> None:
    """`--set lr=1e-5` sets args.lr as a float; dotted keys reach env, watch and top fields."""
    recipe = recipe_from_yaml(GOOD)
    new = apply_overrides(
        recipe,
        ["lr=1e-5", "args.micro_batch=4", "env.HF_HOME=/x", "kill_grace_secs=3", "+args.new=yes"],
    )
    assert new.args["lr"] == 1e-5 and new.args["micro_batch"] == 4
    assert new.args["new"] == "yes"
    assert new.env["HF_HOME"] == "/x" and new.kill_grace_secs == 3
    assert recipe.args["lr"] == 2e-4  # the original is untouched
    assert recipe.with_overrides(["on.nan.max=1"]).on["nan"].max == 1


def test_override_values_that_yaml_would_misread() -> None:
    """`--set env.X=a: b`, `#tag` and an empty value mean what a shell user typed."""
    recipe = recipe_from_yaml(GOOD)
    new = apply_overrides(
        recipe, ["env.X=a: b", "env.Y=007", "model=#tag", "lr=", "+args.seq=[1, 2]"]
    )
    assert new.env["X"] == "a: b" and new.env["Y"] == "007"
    assert new.args["model"] == "#tag"
    values = {"run_dir": "/r", "base_weights": "/w"}
    assert new.args["lr"] is None and "--lr" not in new.render_argv(values)  # null: left out
    assert new.args["seq"] == [1, 2]


def test_override_of_unknown_key_names_it() -> None:
    """`--set lr2=1` is an error naming the key and listing what args has."""
    with pytest.raises(RecipeError) as info:
        apply_overrides(recipe_from_yaml(GOOD), ["lr2=1", "micro_batch=4", "noequals"])
    assert str(info.value).splitlines() == [
        "--set lr2=1: unknown key 'lr2'; did you mean 'lr'? "
        "(args has: model, output_dir, lr, micro_batch, grad_accum); to add it to args write "
        "+lr2=1",
        "--set noequals: write it as key=value",
    ]


def test_override_with_wrong_type_is_validated() -> None:
    """A `--set` value the model rejects says which --set it was and why."""
    with pytest.raises(RecipeError) as info:
        apply_overrides(recipe_from_yaml(GOOD), ["kill_grace_secs=soon"])
    assert str(info.value).startswith("--set kill_grace_secs=soon: kill_grace_secs: Input should")


def test_override_of_watch_settings_is_validated() -> None:
    """`--set watch.<rule>.<field>` goes through the watch settings model (unknown rule refused)."""
    recipe = recipe_from_yaml(GOOD)
    with pytest.raises(RecipeError) as info:
        apply_overrides(recipe, ["watch.no_such_rule.secs=3"])
    assert "watch.no_such_rule" in str(info.value)


# ---------------------------------------------------------------- flags


ARGS = {"lr": 0.1, "micro_batch": 4, "fp16": True, "compile": False, "tags": ["a", "b"]}
ARGS_NONE = {**ARGS, "skip": None, "data": "d.txt"}


@pytest.mark.parametrize(
    ("style", "args", "expected"),
    [
        (
            FlagStyle(),
            ARGS,
            "--lr 0.1 --micro_batch 4 --fp16 --tags a b",
        ),
        (
            FlagStyle(prefix="-", dashes=True, bools="value"),
            ARGS,
            "-lr 0.1 -micro-batch 4 -fp16 true -compile false -tags a b",
        ),
        (
            FlagStyle(equals=True, lists="join", bools="value", true_value="1", false_value="0"),
            ARGS,
            "--lr=0.1 --micro_batch=4 --fp16=1 --compile=0 --tags=a,b",
        ),
        (
            FlagStyle(lists="repeat"),
            ARGS,
            "--lr 0.1 --micro_batch 4 --fp16 --tags a --tags b",
        ),
        (
            FlagStyle(positional=["data"]),
            ARGS_NONE,
            "--lr 0.1 --micro_batch 4 --fp16 --tags a b d.txt",
        ),
        (
            FlagStyle(positional=["data", "tags"], positional_first=True),
            ARGS_NONE,
            "d.txt a b --lr 0.1 --micro_batch 4 --fp16",
        ),
    ],
)
def test_flag_styles(style: FlagStyle, args: dict, expected: str) -> None:
    """Each flag style spells args the way such trainers expect; None is left out."""
    assert render_args(args, style, {}) == expected.split()


def test_render_argv_fills_placeholders() -> None:
    """Placeholders in command and args are filled from the run's values, args in file order."""
    recipe = recipe_from_yaml(GOOD)
    values = {"run_dir": "/l/r1", "run_id": "r1", "base_weights": "/models/tiny", "attempt": "1"}
    argv = recipe.render_argv({**values, "name": "sft-tiny"})
    assert argv == [
        *("python3", "-m", "trainer", "--model", "/models/tiny", "--output_dir", "/l/r1/out"),
        *("--lr", "0.0002", "--micro_batch", "8", "--grad_accum", "2"),
    ]


# ---------------------------------------------------------------- YAML out


def test_to_yaml_round_trips_a_full_recipe(tmp_path: Path) -> None:
    """load(to_yaml(recipe)) equals the recipe, flags, policies and preflight included."""
    text = GOOD + textwrap.dedent("""\
        cwd: "{run_dir}"
        patterns: ['step (?P<step>\\d+)']
        flags: {prefix: "-", dashes: true, positional: [model]}
        kill_grace_secs: 2.5
        preflight: {gpu_gb: 24, dtype: bf16}
    """)
    recipe = load_recipe(write(tmp_path, text))
    again = load_recipe(write(tmp_path, recipe.to_yaml(), "again.yaml"))
    assert again == recipe


def test_to_yaml_redacts_secrets_unless_asked() -> None:
    """Secret env values become <redacted> in YAML out; redact_secrets=False keeps them."""
    recipe = apply_overrides(recipe_from_yaml(GOOD), ["env.HF_TOKEN=hf_abc", "env.DB_PASSWORD=pw"])
    out = recipe.to_yaml()
    assert "hf_abc" not in out and "pw\n" not in out and out.count("<redacted>") == 2
    assert recipe_from_yaml(recipe.to_yaml(redact_secrets=False)) == recipe


_plain_text = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="{}"), max_size=12
)
_scalars = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.booleans(),
    st.none(),
    _plain_text,
)


@settings(max_examples=60, deadline=None)
@given(
    args=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
        st.one_of(_scalars, st.lists(st.one_of(_scalars), max_size=3)),
        max_size=6,
    ),
    env=st.dictionaries(st.from_regex(r"[A-Z][A-Z0-9_]{0,6}", fullmatch=True), _plain_text),
)
@example(args={"prompt": "神神 F"}, env={"A": "\x85"})  # NEL: PyYAML's UTF-8 output mangles it
def test_yaml_round_trip_of_any_args(args: dict, env: dict) -> None:
    """Any args and env values (numbers, `1e-5`-like text, 'on', lists) survive YAML out and in."""
    env = {k: v for k, v in env.items() if not is_secret(k)}
    args = {k: v for k, v in args.items() if not is_secret_arg(k, v)}
    recipe = Recipe(name="r", command=["x"], args=args, env=env)
    assert recipe_from_yaml(recipe.to_yaml()) == recipe


_yaml_chars = st.sampled_from([*"abnoxyz01234-_.:{}[],'\"!&*|>#%@` \n\t", "on", "{run_dir}"])


@settings(max_examples=150, deadline=None)
@given(
    cut=st.integers(0, len(GOOD)),
    junk=st.lists(_yaml_chars, max_size=12).map("".join),
    drop=st.integers(0, 20),
)
def test_any_mangled_recipe_gives_a_recipe_or_a_recipe_error(
    cut: int, junk: str, drop: int
) -> None:
    """A recipe with text cut out and junk put in either loads or says what is wrong, never
    crashes with another exception."""
    text = GOOD[:cut] + junk + GOOD[cut + drop :]
    try:
        recipe_from_yaml(text, "m.yaml")
    except RecipeError as exc:
        assert exc.problems and all(str(p).startswith("m.yaml") for p in exc.problems)


ALIAS_PAIRS = list(zip("abcdef", "bcdefg", strict=True))


@pytest.mark.parametrize(
    "text",
    [
        "a: &x [*x]\n",
        "name: !!python/object:os.system x\n",
        "name: x\ncommand: [x]\nargs: {d: !!binary aGVsbG8=}\n",
        "\tname: x\n",
        "name: x\n---\nname: y\n",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in ALIAS_PAIRS),
    ],
)
def test_odd_yaml_is_a_recipe_error(text: str) -> None:
    """Recursive or exploding aliases, python tags, binary values, tabs, two documents are
    each reported as a problem with the recipe, never a crash."""
    with pytest.raises(RecipeError) as info:
        recipe_from_yaml(text, "odd.yaml")
    assert str(info.value).startswith("odd.yaml")


@pytest.mark.parametrize(
    ("text", "sets", "expected"),
    [
        (GOOD + "kill_grace: 5\n", [], ":14: kill_grace: unknown key; did you mean"),
        (GOOD + "kill_grace_secs: ten\n", [], ":14: kill_grace_secs: Input should be"),
        (GOOD.replace("args:", "args: [", 1), [], ": invalid YAML"),
        (GOOD, ["--set", "lr2=1"], "--set lr2=1: unknown key 'lr2'"),
    ],
    ids=["misspelt", "wrong-type", "invalid-yaml", "set-unknown"],
)
def test_ftmon_run_with_a_bad_recipe_exits_2(
    tmp_path: Path, text: str, sets: list[str], expected: str
) -> None:
    """`ftmon run` of a bad recipe (or a bad --set) exits 2 with one line naming file and field,
    launches nothing, and prints no traceback."""
    path = write(tmp_path, text)
    logs = ["--logs-dir", str(tmp_path / "logs")]
    proc = subprocess.run(
        [sys.executable, "-m", "supervisor", "run", str(path), *sets, "--headless", *logs],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not list((tmp_path / "logs").glob("*/output.log"))


def test_a_bad_set_of_a_secret_never_echoes_its_value() -> None:
    """A `--set` problem names the override, but a secret's value (arg or env) as <redacted>."""
    recipe = recipe_from_yaml("name: r\ncommand: [x]\nargs: {steps: 1}\n")
    with pytest.raises(RecipeError) as info:
        apply_overrides(recipe, ["api_key=hf_SECRET1", "stpes=4"])
    text = str(info.value)
    assert "hf_SECRET1" not in text and "--set api_key=<redacted>" in text
    assert "--set stpes=4" in text
    with pytest.raises(RecipeError) as info:
        apply_overrides(recipe, ["env.HF_TOKEN=hf_SECRET2", "env.9BAD=x"])
    assert "hf_SECRET2" not in str(info.value)


# ---------------------------------------------------------------- bounds and --set types (issue 10)


def test_size_and_nesting_are_refused_before_any_parser_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recipe nested thousands of levels deep, or 300k keys, is refused by a linear look at
    its text: the YAML parser is never called (no RecursionError, no 400 MB)."""
    import supervisor.recipe.model as model

    def no_parsing(text: str) -> None:
        raise AssertionError("the parser ran")

    monkeypatch.setattr(model, "load_with_lines", no_parsing)
    deep = write(tmp_path, "name: d\ncommand: [x]\nargs:\n  a: " + "[" * 10_000 + "]" * 10_000)
    (problem,) = problems_of(deep)
    assert problem.endswith(":4: nested over 40 levels deep here; a recipe nests at most that; "
                            "is this the recipe you meant?")  # fmt: skip
    blocks = "".join(" " * i + f"k{i}:\n" for i in range(200))
    (problem,) = problems_of(write(tmp_path, f"name: d\ncommand: [x]\n{blocks}", "b.yaml"))
    assert "nested over 40 levels deep" in problem
    wide = write(tmp_path, "args:\n" + "".join(f"  k{i}: {i}\n" for i in range(300_000)), "w.yaml")
    (problem,) = problems_of(wide)
    assert "the recipe is over 131072 bytes" in problem


def test_every_shipped_recipe_is_within_the_bounds() -> None:
    from supervisor.recipe.bounds import text_problem

    for path in sorted((Path(__file__).resolve().parents[2] / "recipes").rglob("*.yaml")):
        assert text_problem(path.read_text()) is None, path


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kill_grace_secs", ".inf", "kill_grace_secs: Input should be a finite number"),
        ("kill_grace_secs", ".nan", "kill_grace_secs: Input should be a finite number"),
        ("kill_grace_secs", "86400", "kill_grace_secs: Input should be less than or equal to 3600"),
        ("watch", "{stall: {secs: .inf}}", "watch.stall.secs: inf is not a finite number"),
        ("watch", "{stall: {secs: 1.0e+9}}", "watch.stall.secs: 1e+09 seconds is over 604800"),
    ],
)
def test_durations_are_finite_and_bounded(
    tmp_path: Path, field: str, value: str, message: str
) -> None:
    """An infinite grace never sends SIGKILL, an infinite stall never fires: refused."""
    (problem,) = problems_of(write(tmp_path, f"name: r\ncommand: [x]\n{field}: {value}\n"))
    assert message in problem


def test_set_keeps_the_type_of_the_arg_it_replaces() -> None:
    """`--set lr=abc` on a number is an error naming the type; an int stays an int, text
    stays text (`model=123`), a float takes an int, null drops the flag."""
    recipe = recipe_from_yaml(GOOD)
    with pytest.raises(RecipeError) as info:
        apply_overrides(recipe, ["lr=abc", "micro_batch=2.5", "model=[a]"])
    assert str(info.value).splitlines() == [
        "--set lr=abc: args.lr: expects a number (float, like 0.0002), got 'abc'",
        "--set micro_batch=2.5: args.micro_batch: expects a whole number (int, like 8), got '2.5'",
    ]
    new = apply_overrides(recipe, ["lr=1", "model=123", "micro_batch=4", "grad_accum=null"])
    assert new.args["lr"] == 1.0 and isinstance(new.args["lr"], float)
    assert new.args["model"] == "123" and new.args["micro_batch"] == 4
    assert new.args["grad_accum"] is None


def test_set_of_an_arg_the_recipe_lacks_needs_a_plus() -> None:
    """`--set args.micro_bach=4` is a typo with "did you mean", not a new flag the trainer
    rejects; `+args.seed=1` (Hydra's spelling) adds one on purpose."""
    recipe = recipe_from_yaml(GOOD)
    with pytest.raises(RecipeError) as info:
        apply_overrides(recipe, ["args.micro_bach=4"])
    (line,) = str(info.value).splitlines()
    assert "args has no 'micro_bach'; did you mean 'micro_batch'?" in line
    assert line.endswith("to add it write +args.micro_bach=4")
    assert apply_overrides(recipe, ["+args.seed=1"]).args["seed"] == 1
    with pytest.raises(RecipeError) as info:
        apply_overrides(recipe, ["args.hub_token=hf_abcdefghijklmnopqrstuvwxyz"])
    assert "hf_abc" not in str(info.value) and "+args.hub_token=<redacted>" in str(info.value)


def test_policy_from_and_checkpoints_round_trip() -> None:
    """`from: last_good_checkpoint` (a Python keyword as a YAML key) loads and writes back."""
    text = GOOD.replace(
        'nan: {do: relaunch, adjust: {lr: "*0.5"}, max: 3}',
        "nan: {do: relaunch, from: last_good_checkpoint, skip_batches: 16}",
    )
    recipe = recipe_from_yaml(text + "checkpoints: {dir: '{run_dir}/out', skip_arg: skip}\n")
    assert recipe.on["nan"].from_ == "last_good_checkpoint" and recipe.on["nan"].skip_batches == 16
    assert recipe_from_yaml(recipe.to_yaml()) == recipe
    assert "from: last_good_checkpoint" in recipe.to_yaml()
    no_dir = GOOD.replace("output_dir", "out_path").replace(
        'nan: {do: relaunch, adjust: {lr: "*0.5"}, max: 3}',
        "nan: {do: relaunch, from: last_good_checkpoint}",
    )
    with pytest.raises(RecipeError, match=r"on\.nan\.from: needs `checkpoints: \{dir: \.\.\.\}`"):
        recipe_from_yaml(no_dir)
    with pytest.raises(RecipeError, match=r"on\.nan\.skip_batches: needs `checkpoints: \{skip_arg"):
        recipe_from_yaml(text)  # the default (HF) checkpoints have no skip flag
    bad = GOOD + "checkpoints: {dir: x, pattern: 'ckpt-\\d+'}\n"
    with pytest.raises(RecipeError, match="needs a group that captures the step"):
        recipe_from_yaml(bad)
