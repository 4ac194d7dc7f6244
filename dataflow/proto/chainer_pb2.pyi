from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PipelineSubscriptionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class PipelineUpdateMessage(_message.Message):
    __slots__ = ("op", "pipeline", "version", "uid", "updates", "pipelineOutputTopic", "pipelineErrorTopic", "allowCycles", "maxStepRevisits", "timestamp", "stream")
    class PipelineOperation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        Unknown: _ClassVar[PipelineUpdateMessage.PipelineOperation]
        Create: _ClassVar[PipelineUpdateMessage.PipelineOperation]
        Delete: _ClassVar[PipelineUpdateMessage.PipelineOperation]
        Rebalance: _ClassVar[PipelineUpdateMessage.PipelineOperation]
        Ready: _ClassVar[PipelineUpdateMessage.PipelineOperation]
    Unknown: PipelineUpdateMessage.PipelineOperation
    Create: PipelineUpdateMessage.PipelineOperation
    Delete: PipelineUpdateMessage.PipelineOperation
    Rebalance: PipelineUpdateMessage.PipelineOperation
    Ready: PipelineUpdateMessage.PipelineOperation
    OP_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    PIPELINEOUTPUTTOPIC_FIELD_NUMBER: _ClassVar[int]
    PIPELINEERRORTOPIC_FIELD_NUMBER: _ClassVar[int]
    ALLOWCYCLES_FIELD_NUMBER: _ClassVar[int]
    MAXSTEPREVISITS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    op: PipelineUpdateMessage.PipelineOperation
    pipeline: str
    version: int
    uid: str
    updates: _containers.RepeatedCompositeFieldContainer[PipelineStepUpdate]
    pipelineOutputTopic: str
    pipelineErrorTopic: str
    allowCycles: bool
    maxStepRevisits: int
    timestamp: int
    stream: str
    def __init__(self, op: _Optional[_Union[PipelineUpdateMessage.PipelineOperation, str]] = ..., pipeline: _Optional[str] = ..., version: _Optional[int] = ..., uid: _Optional[str] = ..., updates: _Optional[_Iterable[_Union[PipelineStepUpdate, _Mapping]]] = ..., pipelineOutputTopic: _Optional[str] = ..., pipelineErrorTopic: _Optional[str] = ..., allowCycles: _Optional[bool] = ..., maxStepRevisits: _Optional[int] = ..., timestamp: _Optional[int] = ..., stream: _Optional[str] = ...) -> None: ...

class PipelineStepUpdate(_message.Message):
    __slots__ = ("sources", "triggers", "sink", "inputJoinTy", "triggersJoinTy", "passEmptyResponses", "joinWindowMs", "tensorMap", "batch")
    class PipelineJoinType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        Unknown: _ClassVar[PipelineStepUpdate.PipelineJoinType]
        Inner: _ClassVar[PipelineStepUpdate.PipelineJoinType]
        Outer: _ClassVar[PipelineStepUpdate.PipelineJoinType]
        Any: _ClassVar[PipelineStepUpdate.PipelineJoinType]
    Unknown: PipelineStepUpdate.PipelineJoinType
    Inner: PipelineStepUpdate.PipelineJoinType
    Outer: PipelineStepUpdate.PipelineJoinType
    Any: PipelineStepUpdate.PipelineJoinType
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    SINK_FIELD_NUMBER: _ClassVar[int]
    INPUTJOINTY_FIELD_NUMBER: _ClassVar[int]
    TRIGGERSJOINTY_FIELD_NUMBER: _ClassVar[int]
    PASSEMPTYRESPONSES_FIELD_NUMBER: _ClassVar[int]
    JOINWINDOWMS_FIELD_NUMBER: _ClassVar[int]
    TENSORMAP_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    sources: _containers.RepeatedCompositeFieldContainer[PipelineTopic]
    triggers: _containers.RepeatedCompositeFieldContainer[PipelineTopic]
    sink: PipelineTopic
    inputJoinTy: PipelineStepUpdate.PipelineJoinType
    triggersJoinTy: PipelineStepUpdate.PipelineJoinType
    passEmptyResponses: bool
    joinWindowMs: int
    tensorMap: _containers.RepeatedCompositeFieldContainer[PipelineTensorMapping]
    batch: Batch
    def __init__(self, sources: _Optional[_Iterable[_Union[PipelineTopic, _Mapping]]] = ..., triggers: _Optional[_Iterable[_Union[PipelineTopic, _Mapping]]] = ..., sink: _Optional[_Union[PipelineTopic, _Mapping]] = ..., inputJoinTy: _Optional[_Union[PipelineStepUpdate.PipelineJoinType, str]] = ..., triggersJoinTy: _Optional[_Union[PipelineStepUpdate.PipelineJoinType, str]] = ..., passEmptyResponses: _Optional[bool] = ..., joinWindowMs: _Optional[int] = ..., tensorMap: _Optional[_Iterable[_Union[PipelineTensorMapping, _Mapping]]] = ..., batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("size", "windowMs", "rolling")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    WINDOWMS_FIELD_NUMBER: _ClassVar[int]
    ROLLING_FIELD_NUMBER: _ClassVar[int]
    size: int
    windowMs: int
    rolling: bool
    def __init__(self, size: _Optional[int] = ..., windowMs: _Optional[int] = ..., rolling: _Optional[bool] = ...) -> None: ...

class PipelineTensorMapping(_message.Message):
    __slots__ = ("pipelineName", "topicAndTensor", "tensorName")
    PIPELINENAME_FIELD_NUMBER: _ClassVar[int]
    TOPICANDTENSOR_FIELD_NUMBER: _ClassVar[int]
    TENSORNAME_FIELD_NUMBER: _ClassVar[int]
    pipelineName: str
    topicAndTensor: str
    tensorName: str
    def __init__(self, pipelineName: _Optional[str] = ..., topicAndTensor: _Optional[str] = ..., tensorName: _Optional[str] = ...) -> None: ...

class PipelineTopic(_message.Message):
    __slots__ = ("pipelineName", "topicName", "tensor")
    PIPELINENAME_FIELD_NUMBER: _ClassVar[int]
    TOPICNAME_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    pipelineName: str
    topicName: str
    tensor: str
    def __init__(self, pipelineName: _Optional[str] = ..., topicName: _Optional[str] = ..., tensor: _Optional[str] = ...) -> None: ...

class PipelineUpdateStatusMessage(_message.Message):
    __slots__ = ("update", "success", "reason")
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    update: PipelineUpdateMessage
    success: bool
    reason: str
    def __init__(self, update: _Optional[_Union[PipelineUpdateMessage, _Mapping]] = ..., success: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class PipelineUpdateStatusResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
