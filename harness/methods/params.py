"""Parameters of the built-in methods: plain pydantic models, so validating a suite needs no torch."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from harness.methods.base import MethodParams
from harness.tasks.augment import Augment

DYNAMIC_OP_TYPES = ("MatMul", "Attention", "Gather", "EmbedLayerNormalization", "Conv", "LSTM",
                    "Transpose")

class KDDataParams(MethodParams):
    """Unlabelled inputs added to the train set for a distillation loss, which the teacher
    labels (harness.tasks.augment): perturbed copies of the train set, and mismatched pairs
    per train example (pair tasks; none for single-sentence tasks)."""

    augment_copies: int = Field(0, ge=0, le=10)
    augment_mismatched: float = Field(0.0, ge=0, le=10)

    @property
    def augment(self) -> Augment:
        return Augment(self.augment_copies, self.augment_mismatched)

    def _needs_teacher(self, distill: bool) -> None:
        if self.augment.adds and not distill:
            raise ValueError("augment_copies and augment_mismatched add unlabelled examples "
                             "that only a teacher labels: set distill: true")


class DistillParams(KDDataParams):
    student: str | None = None  # a suite model whose fine-tuned baseline starts the student
    layers: list[int] | None = None  # teacher layers copied into the student (default every other)
    temperature: float = Field(2.0, gt=0)
    alpha_soft: float = Field(0.5, ge=0)
    alpha_hard: float = Field(0.5, ge=0)
    alpha_cos: float = Field(0.0, ge=0)
    epochs: float | None = Field(None, ge=0)  # None: the suite's finetune.epochs

    def suite_problems(self, models: Sequence[str]) -> dict[str, str]:
        if self.student is not None and self.student not in models:
            return {"student": f"'{self.student}' is not a model of this suite (its fine-tuned "
                               f"baseline starts the student); models: {', '.join(models)}"}
        return {}

    @model_validator(mode="after")
    def _check(self) -> DistillParams:
        if self.student is not None and self.layers is not None:
            raise ValueError("give either 'student' or 'layers', not both")
        if self.alpha_soft + self.alpha_hard + self.alpha_cos == 0:
            raise ValueError("at least one of alpha_soft, alpha_hard, alpha_cos must be > 0")
        return self


class UnstructuredParams(KDDataParams):
    sparsity: float = Field(0.8, gt=0, lt=1)
    schedule: Literal["cubic", "oneshot"] = "cubic"
    epochs: float | None = Field(None, ge=0)  # recovery fine-tune; None: finetune.epochs
    distill: bool = False  # soft targets from the fine-tuned baseline during recovery
    begin_fraction: float = Field(0.0, ge=0, le=1)
    end_fraction: float = Field(0.7, ge=0, le=1)

    @model_validator(mode="after")
    def _order(self) -> UnstructuredParams:
        if self.end_fraction < self.begin_fraction:
            raise ValueError("end_fraction must be >= begin_fraction")
        self._needs_teacher(self.distill)
        return self


class StructuredParams(KDDataParams):
    heads_fraction: float = Field(0.5, ge=0, lt=1)  # of all heads, removed globally
    neurons_fraction: float = Field(0.5, ge=0, lt=1)  # of each layer's FFN neurons
    importance: Literal["gradient", "magnitude"] = "gradient"
    importance_samples: int = Field(256, gt=0)
    epochs: float | None = Field(None, ge=0)  # recovery fine-tune; None: finetune.epochs
    distill: bool = True

    @model_validator(mode="after")
    def _teacher(self) -> StructuredParams:
        self._needs_teacher(self.distill)
        return self


class Int8DynamicParams(MethodParams):
    per_channel: bool = True  # same speed here, ~half the logit error of per-tensor
    reduce_range: bool = False  # 7-bit weights: only for CPUs without VNNI
    op_types: list[str] | None = None  # None: every op type onnxruntime can quantize
    optimize: bool = True  # quantize the CPU-optimized fused graph (else the graph as given)
    fast_gelu: bool = True  # tanh Gelu approximation (only with optimize)

    @field_validator("op_types")
    @classmethod
    def _known_ops(cls, v: list[str] | None) -> list[str] | None:
        bad = sorted(set(v or []) - set(DYNAMIC_OP_TYPES))
        if bad:
            raise ValueError(f"cannot quantize {bad} dynamically; known: {list(DYNAMIC_OP_TYPES)}")
        return v


class Int8StaticParams(MethodParams):
    calibration_samples: PositiveInt = 128
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    per_channel: bool = True
    quant_format: Literal["qdq", "qoperator"] = "qdq"
    percentile: float = Field(99.999, gt=0, le=100)
    optimize: bool = True  # the CPU recipe above (else onnxruntime's defaults)
