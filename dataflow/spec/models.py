"""Pydantic models of Seldon Core 2's ``Pipeline`` resource (``mlops.seldon.io/v1alpha1``).

Field names are the resource's camelCase names; unknown fields are errors (a misspelt ``input:`` on a
step must not silently turn into a step with default inputs, as sample ``error-bad-spec.yaml`` shows).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

I64 = 2**63 - 1  # integers are 64-bit in the Pipeline resource (and in its digest)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class JoinKind(StrEnum):
    """How a multi-source step (or trigger set) combines its sources."""

    INNER = "inner"
    OUTER = "outer"
    ANY = "any"


class Batch(_Strict):
    size: int | None = Field(None, ge=0, le=I64)
    window_ms: int | None = Field(None, alias="windowMs", ge=0, le=I64)
    rolling: bool = False


class Step(_Strict):
    name: str = Field(min_length=1)
    inputs: list[str] | None = None
    join_window_ms: int | None = Field(None, alias="joinWindowMs", ge=0, le=I64)
    tensor_map: dict[str, str] | None = Field(None, alias="tensorMap")
    triggers: list[str] | None = None
    inputs_join_type: JoinKind = Field(JoinKind.INNER, alias="inputsJoinType")
    triggers_join_type: JoinKind = Field(JoinKind.INNER, alias="triggersJoinType")
    batch: Batch | None = None


class PipelineOutput(_Strict):
    steps: list[str] | None = None
    join_window_ms: int | None = Field(None, alias="joinWindowMs", ge=0, le=I64)
    steps_join: JoinKind = Field(JoinKind.INNER, alias="stepsJoin")
    tensor_map: dict[str, str] | None = Field(None, alias="tensorMap")


class PipelineInput(_Strict):
    external_inputs: list[str] | None = Field(None, alias="externalInputs")
    external_triggers: list[str] | None = Field(None, alias="externalTriggers")
    join_window_ms: int | None = Field(None, alias="joinWindowMs", ge=0, le=I64)
    join_type: JoinKind = Field(JoinKind.INNER, alias="joinType")
    triggers_join_type: JoinKind = Field(JoinKind.INNER, alias="triggersJoinType")
    tensor_map: dict[str, str] | None = Field(None, alias="tensorMap")


class DataflowSpec(_Strict):
    clean_topics_on_delete: bool = Field(False, alias="cleanTopicsOnDelete")


class PipelineSpec(_Strict):
    input: PipelineInput | None = None
    steps: list[Step]
    output: PipelineOutput | None = None
    allow_cycles: bool = Field(False, alias="allowCycles")
    max_step_revisits: int = Field(0, alias="maxStepRevisits", ge=0, le=I64)
    dataflow: DataflowSpec | None = None


class Metadata(BaseModel):
    # Kubernetes metadata carries many fields we do not use (labels, annotations, uid, ...): allow them.
    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1)
    namespace: str | None = None


class Pipeline(_Strict):
    api_version: Literal["mlops.seldon.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Pipeline"]
    metadata: Metadata
    spec: PipelineSpec
    # `status` appears in resources exported from a cluster; it is not ours to read.
    status: dict[str, object] | None = None

    @property
    def name(self) -> str:
        return self.metadata.name
