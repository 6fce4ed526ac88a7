"""Tokenizers behind one small interface: bytes for the tiny model, a local HF tokenizer otherwise.

Both turn a (prompt, response) pair into token ids with the prompt part known, so the loss can
skip the prompt. `turns` are the (role, content) messages before the response of a `messages`
record: a chat template renders them as they are (system prompt included); elsewhere the
flattened `prompt` text stands for them.

The tiny model's tokenizer is made on the spot (UTF-8 bytes plus three special ids), so nothing
has to be downloaded or trained; it is saved as `ftmon_tokenizer.json` beside the weights so a
saved tiny model loads back with `--model DIR`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

BYTE_TOKENIZER_FILE = "ftmon_tokenizer.json"


class TextCodec(Protocol):
    pad_id: int
    eos_id: int
    vocab_size: int

    def encode_pair(
        self, prompt: str, response: str, turns: tuple[tuple[str, str], ...] = ()
    ) -> tuple[list[int], list[int]]: ...
    def encode_prompt(self, prompt: str, turns: tuple[tuple[str, str], ...] = ()) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def save(self, directory: Path) -> None: ...


@dataclass(frozen=True)
class ByteTokenizer:
    """UTF-8 bytes 0..255, then pad, bos, eos. The prompt is framed as `Q: ...\\nA: `."""

    pad_id: int = 256
    bos_id: int = 257
    eos_id: int = 258
    vocab_size: int = 259

    def encode_prompt(self, prompt: str, turns: tuple[tuple[str, str], ...] = ()) -> list[int]:
        return [self.bos_id, *f"Q: {prompt}\nA: ".encode()]

    def encode_pair(
        self, prompt: str, response: str, turns: tuple[tuple[str, str], ...] = ()
    ) -> tuple[list[int], list[int]]:
        return self.encode_prompt(prompt), [*response.encode(), self.eos_id]

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")

    def save(self, directory: Path) -> None:
        (directory / BYTE_TOKENIZER_FILE).write_text(json.dumps({"kind": "bytes"}) + "\n")


class HFTokenizer:
    """A local Hugging Face tokenizer; uses its chat template when it has one."""

    def __init__(self, tok: Any) -> None:
        self.tok = tok
        eos = tok.eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos token; generation could never stop")
        self.eos_id: int = int(eos)
        pad = tok.pad_token_id
        self.pad_id: int = int(pad) if pad is not None else self.eos_id
        self.vocab_size: int = len(tok)
        self.chat = bool(getattr(tok, "chat_template", None))

    def _ids(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def encode_prompt(self, prompt: str, turns: tuple[tuple[str, str], ...] = ()) -> list[int]:
        if self.chat:
            messages = [{"role": r, "content": c} for r, c in turns] or [
                {"role": "user", "content": prompt}
            ]
            text = self.tok.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            return self._ids(text)
        bos = [self.tok.bos_token_id] if self.tok.bos_token_id is not None else []
        return bos + self._ids(prompt)

    def encode_pair(
        self, prompt: str, response: str, turns: tuple[tuple[str, str], ...] = ()
    ) -> tuple[list[int], list[int]]:
        return self.encode_prompt(prompt, turns), [*self._ids(response), self.eos_id]

    def decode(self, ids: list[int]) -> str:
        return str(self.tok.decode(ids, skip_special_tokens=True))

    def save(self, directory: Path) -> None:
        self.tok.save_pretrained(str(directory))


def load_tokenizer(model: str) -> TextCodec:
    """`tiny` or a saved tiny model -> bytes; any other directory -> its own HF tokenizer."""
    if model == "tiny" or (Path(model) / BYTE_TOKENIZER_FILE).is_file():
        return ByteTokenizer()
    from transformers import AutoTokenizer

    return HFTokenizer(AutoTokenizer.from_pretrained(model, local_files_only=True))
