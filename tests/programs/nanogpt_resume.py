"""Test program shaped like nanoGPT's train.py where ftmon meets it: `--key=value` overrides,
`init_from=resume` loads `out_dir/ckpt.pt`, an eval every `eval_interval` iterations prints
`step N: train loss X, val loss Y` then `saving checkpoint to OUT` and overwrites `ckpt.pt` in
place (as torch.save does: no temporary file), iterations print `iter N: loss X, time ...`.

    python nanogpt_resume.py --out_dir=OUT --init_from=scratch|resume --learning_rate=LR
        [--max_iters=N] [--eval_interval=K] [--nan_above=X] [--nan_at=I] [--save_secs=S]
        [--base=FILE] [--edit_base=FILE] [--hold=1]

With LR above `nan_above`, the weights turn NaN from iteration `nan_at` on (the update of
the iteration before breaks them), so the eval at or after it prints NaN and saves NaN
weights: a checkpoint saved after that resumes NaN from its first iteration (the failure in
issue 10). A checkpoint is a header line, the payload in chunks (written over `save_secs`
seconds) and a `sha256=` trailer: `python nanogpt_resume.py --check=FILE` exits 0 when the
file loads (complete, checksum right), 1 when not. `--hold=1` keeps running after
`max_iters` (until killed); `--edit_base=FILE` flips a byte in the middle of FILE, keeping its
size and mtime (a run that writes into the base weights). No torch: the shape is what counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

CONFIG = {
    "out_dir": "out",
    "init_from": "scratch",
    "learning_rate": 6e-4,
    "max_iters": 20,
    "eval_interval": 10,
    "nan_above": 1e-3,
    "nan_at": 15,
    "save_secs": 0.0,
    "base": "",
    "edit_base": "",
    "hold": 0,
    "check": "",
    "interval": 0.01,
}
PAYLOAD = 64 * 1024


def configure(argv: list[str]) -> dict:
    """nanoGPT's configurator: each `--key=value` overrides a global, typed like its default."""
    config = dict(CONFIG)
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            continue  # nanoGPT reads a config file here; none in this test program
        key, value = arg[2:].split("=", 1)
        if key not in config:
            raise ValueError(f"Unknown config key: {key}")
        config[key] = type(config[key])(value) if config[key] != "" else value
    return config


def save(path: Path, state: dict, secs: float) -> None:
    header = (json.dumps(state) + "\n").encode()
    payload = (b"nan " if state["nan"] else b"ok  ") * (PAYLOAD // 4)
    digest = hashlib.sha256(header + payload).hexdigest()
    chunks = 16
    with path.open("wb") as f:  # in place, like torch.save(checkpoint, 'out/ckpt.pt')
        f.write(header)
        for i in range(chunks):
            f.write(payload[i * len(payload) // chunks : (i + 1) * len(payload) // chunks])
            f.flush()
            time.sleep(secs / chunks)
        f.write(f"sha256={digest}\n".encode())


def load(path: Path) -> dict:
    """The checkpoint's state; ValueError when it is incomplete or corrupt."""
    data = path.read_bytes()
    body, sep, trailer = data.rpartition(b"sha256=")
    if not sep or hashlib.sha256(body).hexdigest() != trailer.decode().strip():
        raise ValueError(f"{path}: incomplete or corrupt checkpoint")
    return json.loads(body.split(b"\n", 1)[0])


def edit_middle(path: Path) -> None:
    st = path.stat()
    with path.open("r+b") as f:
        f.seek(st.st_size // 2)
        byte = f.read(1)
        f.seek(st.st_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def main() -> int:
    config = configure(sys.argv[1:])
    if config["check"]:
        try:
            print(load(Path(config["check"])))
            return 0
        except (OSError, ValueError) as exc:
            print(exc)
            return 1
    if config["base"]:
        print(f"loaded base weights from {config['base']}")
        Path(config["base"]).read_bytes()
    out = Path(config["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    it, nan = 0, False
    if config["init_from"] == "resume":
        print(f"Resuming training from {out}")
        state = load(out / "ckpt.pt")  # no ckpt.pt: FileNotFoundError, as nanoGPT
        it, nan = state["iter_num"], state["nan"]
    if config["edit_base"]:
        edit_middle(Path(config["edit_base"]))
    high = config["learning_rate"] > config["nan_above"]
    while True:  # nanoGPT's loop: evaluate (and save) the weights, then train one iteration
        if it % config["eval_interval"] == 0 and it > 0:
            val = "nan" if nan else f"{2.0 / it:.4f}"
            # One write: the eval line and the save announcement arrive together, as they do
            # when nanoGPT prints them back to back.
            sys.stdout.write(
                f"step {it}: train loss {val}, val loss {val}\nsaving checkpoint to {out}\n"
            )
            sys.stdout.flush()
            save(out / "ckpt.pt", {"iter_num": it, "nan": nan}, config["save_secs"])
        if it >= config["max_iters"]:
            break
        loss = "nan" if nan else f"{2.0 / (it + 1):.4f}"
        print(f"iter {it}: loss {loss}, time 10.00ms, mfu 1.00%", flush=True)
        nan = nan or (high and it + 1 >= config["nan_at"])  # this update breaks the weights
        it += 1
        time.sleep(config["interval"])
    while config["hold"]:  # a run that trains on until it is killed
        time.sleep(0.05)
    return 0

if __name__ == "__main__":
    sys.exit(main())
