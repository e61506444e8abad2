"""A small seeded PyTorch fine-tuning loop (optionally with knowledge distillation) and prediction."""
from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from harness.encode import token_lists
from harness.errors import ConfigError
from harness.nn import KDLoss, dropout_rate, numpy_dropout
from harness.tasks.augment import Augment, augment

if TYPE_CHECKING:
    from harness.schema import FinetuneSpec
    from harness.tasks.spec import TaskData, TaskSpec

log = logging.getLogger(__name__)

Features = dict[str, list[list[int]]]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the weights are garbage, so the cell fails."""


@dataclass
class TrainLog:
    """What a training run did: optimizer steps, losses, wall time."""

    steps: int
    examples: int  # trained on, added (unlabelled) examples included
    epochs: float
    final_loss: float  # mean over the last logging window
    mean_loss: float
    seconds: float
    loss_curve: list[float] = field(default_factory=list)  # mean loss per logging window
    precision: str = "fp32"  # 'bf16' when the forward ran under bf16 autocast
    added: int = 0  # unlabelled examples added for distillation (harness.tasks.augment)

    @property
    def added_note(self) -> str:
        """A method note's words on the unlabelled examples added, if any."""
        if not self.added:
            return ""
        return (f" on {self.examples} examples ({self.added} added, unlabelled: perturbed "
                "copies and mismatched pairs labelled by the teacher)")


def _collate(features: Features, idx: np.ndarray | list[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad the selected examples to the longest one among them."""
    ids = [features["input_ids"][i] for i in idx]
    width = max(len(x) for x in ids)
    out = {}
    for key, rows in features.items():
        fill = pad_id if key == "input_ids" else 0
        out[key] = torch.tensor([rows[i] + [fill] * (width - len(rows[i])) for i in idx])
    return out


def encode(tokenizer: Any, data: TaskData, max_len: int) -> dict[str, torch.Tensor]:
    """Tokenize (truncate to max_len) and pad every example of `data` to the longest one."""
    features = token_lists(tokenizer, data, max_len)
    return _collate(features, range(len(data)), tokenizer.pad_token_id or 0)


def iter_batches(tokenizer: Any, data: TaskData, max_len: int, batch_size: int
                 ) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """(inputs, labels) batches in data order, each padded to its longest example."""
    features = token_lists(tokenizer, data, max_len)
    labels = torch.tensor(data.labels)
    for i in range(0, len(data), batch_size):
        idx = list(range(i, min(i + batch_size, len(data))))
        yield _collate(features, idx, tokenizer.pad_token_id or 0), labels[idx]


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def task_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    """Cross-entropy for classification, MSE on the squeezed score for regression."""
    if regression:
        return torch.nn.functional.mse_loss(logits.squeeze(-1), labels.float())
    return torch.nn.functional.cross_entropy(logits, labels.long())


def _optimizer(model: torch.nn.Module, spec: FinetuneSpec, total: int) -> tuple[Any, Any]:
    """AdamW (no decay on biases and LayerNorm) with linear warmup then linear decay.

    The fused kernel on the CPU and CUDA: one pass over the parameters instead of torch's
    default multi-tensor steps (a MiniLM-L6 step's update 75 -> 15 ms on two cores); the
    arithmetic is AdamW's, rounded in another order."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": spec.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    fused = _device(model).type in ("cpu", "cuda")
    opt = torch.optim.AdamW(groups, lr=spec.lr, fused=fused or None)
    warmup = int(spec.warmup_ratio * total)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


GROUP_FACTOR = 50  # length-grouped batches are sorted within windows of this many batches


def _batch_order(n: int, batch_size: int, total: int, seed: int,
                 lengths: list[int] | None = None) -> list[np.ndarray]:
    """Index batches over as many seeded shuffled epochs as `total` steps need.

    With `lengths`, each epoch's shuffled order is cut into windows of GROUP_FACTOR batches,
    each window is sorted by length (so a batch pads to similar lengths) and the batches are
    shuffled again: less padding is trained while every epoch still sees every example once.
    """
    rng = np.random.default_rng(seed)
    batches: list[np.ndarray] = []
    while len(batches) < total:
        perm = rng.permutation(n)
        if lengths is None:
            batches += [perm[i:i + batch_size] for i in range(0, n, batch_size)]
            continue
        window = batch_size * GROUP_FACTOR
        epoch = []
        for w in range(0, n, window):
            chunk = perm[w:w + window]
            chunk = chunk[np.argsort([lengths[i] for i in chunk], kind="stable")]
            epoch += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        batches += [epoch[i] for i in rng.permutation(len(epoch))]
    return batches[:total]


@cache
def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX), as torch detects it."""
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: str) -> str:
    """'bf16' or 'fp32': 'auto' picks bf16 autocast where the device computes bf16 natively."""
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_supports_bf16() else "fp32"


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast for 'bf16' (weights and optimizer stay fp32), nothing for 'fp32'."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def finetune(
    model: torch.nn.Module,
    tokenizer: Any,
    data: TaskData,
    spec: FinetuneSpec,
    task: TaskSpec,
    *,
    teacher: torch.nn.Module | None = None,
    kd: KDLoss | None = None,
    on_step: Callable[[int, int], None] | None = None,
    desc: str = "fine-tune",
    log_every: int = 50,
    more: Augment | None = None,
) -> TrainLog:
    """Train `model` in place for spec.epochs (may be fractional) and leave it in eval mode.

    The forward and loss run under bf16 autocast when `spec.precision` resolves to bf16 (the
    precision used is in the returned log); batches are length-grouped if spec.group_by_length.

    `spec.max_train_samples` is honoured here (a seeded subset; idempotent if the caller already
    took one). With a teacher the loss is `kd` (default `KDLoss()`) against the teacher's outputs.
    `on_step(step, total)` runs before each optimizer step (step counts from 0), e.g. for pruning.
    `more` adds unlabelled inputs to that subset for the teacher to label (harness.tasks.augment).
    """
    data = data.take(spec.max_train_samples, spec.seed)
    n_labelled = len(data)
    if more is not None and more.adds:
        if teacher is None:
            raise ConfigError(f"{desc}: added unlabelled examples need a teacher to label them")
        data = augment(data, more, spec.seed)
    torch.manual_seed(spec.seed)
    np.random.seed(spec.seed % 2**32)
    steps_per_epoch = math.ceil(len(data) / spec.batch_size)
    total = math.ceil(spec.epochs * steps_per_epoch) if len(data) else 0
    start = time.perf_counter()
    if total == 0:
        model.eval()
        return TrainLog(0, len(data), spec.epochs, float("nan"), float("nan"), 0.0,
                        precision="fp32")
    if teacher is not None and kd is None:
        kd = KDLoss()
    features = token_lists(tokenizer, data, spec.max_seq_len)
    labels = torch.tensor(data.labels)
    device = _device(model)
    precision = resolve_precision(spec.precision, device.type)
    opt, sched = _optimizer(model, spec, total)
    if teacher is not None:
        teacher.eval()
    model.train()
    losses: list[float] = []
    curve: list[float] = []
    lengths = [len(x) for x in features["input_ids"]] if spec.group_by_length else None
    order = _batch_order(len(data), spec.batch_size, total, spec.seed, lengths)
    bar = tqdm(order, desc=desc,
               total=total, leave=False, disable=None)
    with _dropout(model, spec):
        for step, idx in enumerate(bar):
            if on_step is not None:
                on_step(step, total)
            batch = {k: v.to(device) for k, v in _collate(features, idx, tokenizer.pad_token_id or 0).items()}
            y = labels[idx].to(device)
            with autocast(precision, device):
                if teacher is None:
                    loss = task_loss(model(**batch).logits.float(), y, task.is_regression)
                else:
                    loss = _kd_loss(model, teacher, kd, batch, y, task.is_regression)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"{desc}: loss is {loss.item()} at step {step + 1}/{total} "
                                       f"(lr {sched.get_last_lr()[0]:.3g}); lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if (step + 1) % log_every == 0 or step + 1 == total:
                window = losses[-((step % log_every) + 1):]
                curve.append(float(np.mean(window)))
                bar.set_postfix(loss=f"{curve[-1]:.4f}")
                log.info("%s step %d/%d loss %.4f lr %.2e", desc, step + 1, total, curve[-1],
                         sched.get_last_lr()[0])
    model.eval()
    seconds = time.perf_counter() - start
    return TrainLog(total, len(data), spec.epochs, curve[-1], float(np.mean(losses)), seconds,
                    curve, precision, len(data) - n_labelled)


@contextlib.contextmanager
def _dropout(model: torch.nn.Module, spec: FinetuneSpec) -> Iterator[None]:
    """The training's dropout: at `spec.dropout` (None: the checkpoint's rates), with masks
    from numpy's generator (`spec.dropout_rng`) on the CPU, else torch's (on CUDA torch's
    generator is fast and a host mask would cost a copy). At rate 0 no mask is drawn; on the
    CPU BERT's attention still runs its eager twin, which trains faster there than SDPA does
    (minilm-l6 MRPC, batch 32, bf16, two cores: 267 against 447 ms a step)."""
    with contextlib.ExitStack() as stack:
        if spec.dropout is not None:
            stack.enter_context(dropout_rate(model, spec.dropout))
        if spec.dropout_rng == "numpy" and _device(model).type == "cpu":
            stack.enter_context(numpy_dropout(model, spec.seed))
        yield


def _kd_loss(model: torch.nn.Module, teacher: torch.nn.Module, kd: KDLoss,
             batch: dict[str, torch.Tensor], labels: torch.Tensor, regression: bool) -> torch.Tensor:
    hidden = kd.alpha_cos > 0
    out = model(**batch, output_hidden_states=hidden)
    t_device = _device(teacher)
    with torch.no_grad():
        t_out = teacher(**{k: v.to(t_device) for k, v in batch.items()}, output_hidden_states=hidden)
    device = labels.device
    return kd(
        out.logits.float(), t_out.logits.float().to(device), labels, regression=regression,
        s_hidden=out.hidden_states[-1].float() if hidden else None,
        t_hidden=t_out.hidden_states[-1].float().to(device) if hidden else None,
        mask=batch.get("attention_mask"),
    )


@torch.no_grad()
def predict(model: torch.nn.Module, tokenizer: Any, data: TaskData, max_len: int,
            batch_size: int = 64) -> np.ndarray:
    """Logits in data order: (n, num_labels) for classification, (n,) for regression.

    Examples are batched by length (less padding) and put back in their original order.
    """
    model.eval()
    features = token_lists(tokenizer, data, max_len)
    order = np.argsort([len(x) for x in features["input_ids"]], kind="stable")
    device = _device(model)
    chunks = []
    for i in range(0, len(order), batch_size):
        batch = _collate(features, order[i:i + batch_size], tokenizer.pad_token_id or 0)
        chunks.append(model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu())
    logits = torch.cat(chunks).numpy() if chunks else np.zeros((0, model.config.num_labels), np.float32)
    out = np.empty_like(logits)
    out[order] = logits
    return out[:, 0] if out.shape[1] == 1 else out
