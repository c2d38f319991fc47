from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ActionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_KIND_UNSPECIFIED: _ClassVar[ActionKind]
    ACTION_KIND_PAUSE: _ClassVar[ActionKind]
    ACTION_KIND_UNPAUSE: _ClassVar[ActionKind]
    ACTION_KIND_KILL: _ClassVar[ActionKind]
    ACTION_KIND_STOP: _ClassVar[ActionKind]

class AlertStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_STATUS_UNSPECIFIED: _ClassVar[AlertStatus]
    ALERT_STATUS_OPEN: _ClassVar[AlertStatus]
    ALERT_STATUS_ACKNOWLEDGED: _ClassVar[AlertStatus]
    ALERT_STATUS_RESOLVED: _ClassVar[AlertStatus]
    ALERT_STATUS_SUPPRESSED: _ClassVar[AlertStatus]
ACTION_KIND_UNSPECIFIED: ActionKind
ACTION_KIND_PAUSE: ActionKind
ACTION_KIND_UNPAUSE: ActionKind
ACTION_KIND_KILL: ActionKind
ACTION_KIND_STOP: ActionKind
ALERT_STATUS_UNSPECIFIED: AlertStatus
ALERT_STATUS_OPEN: AlertStatus
ALERT_STATUS_ACKNOWLEDGED: AlertStatus
ALERT_STATUS_RESOLVED: AlertStatus
ALERT_STATUS_SUPPRESSED: AlertStatus

class Event(_message.Message):
    __slots__ = ("kind", "time_ns", "pid", "tid", "ppid", "uid", "gid", "comm", "exe", "args", "cgroup_id", "container_id", "container_name", "image", "image_id", "runtime", "pexe", "ancestry", "proto", "family", "saddr", "sport", "daddr", "dport", "ret", "exit_code", "child_pid", "syscall", "syscall_nr", "count", "sc_args", "path", "flags", "killed", "truncated", "ancestor_pid", "pod", "namespace", "labels", "image_digest")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    TID_FIELD_NUMBER: _ClassVar[int]
    PPID_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    EXE_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    CGROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    PEXE_FIELD_NUMBER: _ClassVar[int]
    ANCESTRY_FIELD_NUMBER: _ClassVar[int]
    PROTO_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    SADDR_FIELD_NUMBER: _ClassVar[int]
    SPORT_FIELD_NUMBER: _ClassVar[int]
    DADDR_FIELD_NUMBER: _ClassVar[int]
    DPORT_FIELD_NUMBER: _ClassVar[int]
    RET_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    CHILD_PID_FIELD_NUMBER: _ClassVar[int]
    SYSCALL_FIELD_NUMBER: _ClassVar[int]
    SYSCALL_NR_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SC_ARGS_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    KILLED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    ANCESTOR_PID_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    kind: str
    time_ns: int
    pid: int
    tid: int
    ppid: int
    uid: int
    gid: int
    comm: str
    exe: str
    args: _containers.RepeatedScalarFieldContainer[str]
    cgroup_id: int
    container_id: str
    container_name: str
    image: str
    image_id: str
    runtime: str
    pexe: str
    ancestry: _containers.RepeatedScalarFieldContainer[str]
    proto: str
    family: str
    saddr: str
    sport: int
    daddr: str
    dport: int
    ret: int
    exit_code: int
    child_pid: int
    syscall: str
    syscall_nr: int
    count: int
    sc_args: _containers.RepeatedScalarFieldContainer[int]
    path: str
    flags: int
    killed: bool
    truncated: bool
    ancestor_pid: int
    pod: str
    namespace: str
    labels: _containers.ScalarMap[str, str]
    image_digest: str
    def __init__(self, kind: _Optional[str] = ..., time_ns: _Optional[int] = ..., pid: _Optional[int] = ..., tid: _Optional[int] = ..., ppid: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., comm: _Optional[str] = ..., exe: _Optional[str] = ..., args: _Optional[_Iterable[str]] = ..., cgroup_id: _Optional[int] = ..., container_id: _Optional[str] = ..., container_name: _Optional[str] = ..., image: _Optional[str] = ..., image_id: _Optional[str] = ..., runtime: _Optional[str] = ..., pexe: _Optional[str] = ..., ancestry: _Optional[_Iterable[str]] = ..., proto: _Optional[str] = ..., family: _Optional[str] = ..., saddr: _Optional[str] = ..., sport: _Optional[int] = ..., daddr: _Optional[str] = ..., dport: _Optional[int] = ..., ret: _Optional[int] = ..., exit_code: _Optional[int] = ..., child_pid: _Optional[int] = ..., syscall: _Optional[str] = ..., syscall_nr: _Optional[int] = ..., count: _Optional[int] = ..., sc_args: _Optional[_Iterable[int]] = ..., path: _Optional[str] = ..., flags: _Optional[int] = ..., killed: _Optional[bool] = ..., truncated: _Optional[bool] = ..., ancestor_pid: _Optional[int] = ..., pod: _Optional[str] = ..., namespace: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., image_digest: _Optional[str] = ...) -> None: ...

class Finding(_message.Message):
    __slots__ = ("kind", "rule", "priority", "output", "event", "time_ns", "source", "tags", "explanation_json", "action", "mode", "during_loss", "ancestors", "ancestors_end")
    KIND_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_JSON_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DURING_LOSS_FIELD_NUMBER: _ClassVar[int]
    ANCESTORS_FIELD_NUMBER: _ClassVar[int]
    ANCESTORS_END_FIELD_NUMBER: _ClassVar[int]
    kind: str
    rule: str
    priority: str
    output: str
    event: Event
    time_ns: int
    source: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    explanation_json: str
    action: str
    mode: str
    during_loss: bool
    ancestors: _containers.RepeatedCompositeFieldContainer[Ancestor]
    ancestors_end: str
    def __init__(self, kind: _Optional[str] = ..., rule: _Optional[str] = ..., priority: _Optional[str] = ..., output: _Optional[str] = ..., event: _Optional[_Union[Event, _Mapping]] = ..., time_ns: _Optional[int] = ..., source: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., explanation_json: _Optional[str] = ..., action: _Optional[str] = ..., mode: _Optional[str] = ..., during_loss: _Optional[bool] = ..., ancestors: _Optional[_Iterable[_Union[Ancestor, _Mapping]]] = ..., ancestors_end: _Optional[str] = ...) -> None: ...

class Ancestor(_message.Message):
    __slots__ = ("pid", "exe", "args")
    PID_FIELD_NUMBER: _ClassVar[int]
    EXE_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    pid: int
    exe: str
    args: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, pid: _Optional[int] = ..., exe: _Optional[str] = ..., args: _Optional[_Iterable[str]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("sensor_id", "node", "version", "capabilities")
    SENSOR_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    sensor_id: str
    node: str
    version: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sensor_id: _Optional[str] = ..., node: _Optional[str] = ..., version: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ...) -> None: ...

class FindingBatch(_message.Message):
    __slots__ = ("seq", "findings")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    def __init__(self, seq: _Optional[int] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("time_ns", "counters", "containers", "container_images")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ContainerImagesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_IMAGES_FIELD_NUMBER: _ClassVar[int]
    time_ns: int
    counters: _containers.ScalarMap[str, int]
    containers: _containers.RepeatedScalarFieldContainer[str]
    container_images: _containers.ScalarMap[str, str]
    def __init__(self, time_ns: _Optional[int] = ..., counters: _Optional[_Mapping[str, int]] = ..., containers: _Optional[_Iterable[str]] = ..., container_images: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ModelSnapshot(_message.Message):
    __slots__ = ("image_key", "payload", "not_active")
    IMAGE_KEY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    NOT_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    image_key: str
    payload: bytes
    not_active: str
    def __init__(self, image_key: _Optional[str] = ..., payload: _Optional[bytes] = ..., not_active: _Optional[str] = ...) -> None: ...

class ActionResult(_message.Message):
    __slots__ = ("request_id", "container_id", "action", "ok", "error", "latency_ms", "method", "actor", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    container_id: str
    action: ActionKind
    ok: bool
    error: str
    latency_ms: float
    method: str
    actor: str
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., container_id: _Optional[str] = ..., action: _Optional[_Union[ActionKind, str]] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ..., latency_ms: _Optional[float] = ..., method: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SensorMessage(_message.Message):
    __slots__ = ("hello", "batch", "heartbeat", "snapshot", "action_result")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    ACTION_RESULT_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    batch: FindingBatch
    heartbeat: Heartbeat
    snapshot: ModelSnapshot
    action_result: ActionResult
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., batch: _Optional[_Union[FindingBatch, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., snapshot: _Optional[_Union[ModelSnapshot, _Mapping]] = ..., action_result: _Optional[_Union[ActionResult, _Mapping]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class BatchRefused(_message.Message):
    __slots__ = ("seq", "reason")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    seq: int
    reason: str
    def __init__(self, seq: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ImagePolicy(_message.Message):
    __slots__ = ("image", "policy_yaml")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    POLICY_YAML_FIELD_NUMBER: _ClassVar[int]
    image: str
    policy_yaml: bytes
    def __init__(self, image: _Optional[str] = ..., policy_yaml: _Optional[bytes] = ...) -> None: ...

class RuleSet(_message.Message):
    __slots__ = ("name", "yaml")
    NAME_FIELD_NUMBER: _ClassVar[int]
    YAML_FIELD_NUMBER: _ClassVar[int]
    name: str
    yaml: str
    def __init__(self, name: _Optional[str] = ..., yaml: _Optional[str] = ...) -> None: ...

class ContainerAction(_message.Message):
    __slots__ = ("request_id", "container_id", "action", "actor", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    container_id: str
    action: ActionKind
    actor: str
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., container_id: _Optional[str] = ..., action: _Optional[_Union[ActionKind, str]] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class FleetBaseline(_message.Message):
    __slots__ = ("image_key", "payload")
    IMAGE_KEY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    image_key: str
    payload: bytes
    def __init__(self, image_key: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class BaselineItem(_message.Message):
    __slots__ = ("image", "image_key", "dimension", "key_json", "actor", "reason", "forget")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_KEY_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    KEY_JSON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FORGET_FIELD_NUMBER: _ClassVar[int]
    image: str
    image_key: str
    dimension: str
    key_json: str
    actor: str
    reason: str
    forget: bool
    def __init__(self, image: _Optional[str] = ..., image_key: _Optional[str] = ..., dimension: _Optional[str] = ..., key_json: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ..., forget: _Optional[bool] = ...) -> None: ...

class CollectorMessage(_message.Message):
    __slots__ = ("ack", "policy", "rules", "action", "baseline", "accept", "refused")
    ACK_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    ack: Ack
    policy: ImagePolicy
    rules: RuleSet
    action: ContainerAction
    baseline: FleetBaseline
    accept: BaselineItem
    refused: BatchRefused
    def __init__(self, ack: _Optional[_Union[Ack, _Mapping]] = ..., policy: _Optional[_Union[ImagePolicy, _Mapping]] = ..., rules: _Optional[_Union[RuleSet, _Mapping]] = ..., action: _Optional[_Union[ContainerAction, _Mapping]] = ..., baseline: _Optional[_Union[FleetBaseline, _Mapping]] = ..., accept: _Optional[_Union[BaselineItem, _Mapping]] = ..., refused: _Optional[_Union[BatchRefused, _Mapping]] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("id", "finding", "count", "first_seen_ns", "last_seen_ns", "status", "sensor_id", "node", "comment", "history")
    ID_FIELD_NUMBER: _ClassVar[int]
    FINDING_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_NS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_NS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SENSOR_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    id: int
    finding: Finding
    count: int
    first_seen_ns: int
    last_seen_ns: int
    status: AlertStatus
    sensor_id: str
    node: str
    comment: str
    history: _containers.RepeatedCompositeFieldContainer[AlertHistoryEntry]
    def __init__(self, id: _Optional[int] = ..., finding: _Optional[_Union[Finding, _Mapping]] = ..., count: _Optional[int] = ..., first_seen_ns: _Optional[int] = ..., last_seen_ns: _Optional[int] = ..., status: _Optional[_Union[AlertStatus, str]] = ..., sensor_id: _Optional[str] = ..., node: _Optional[str] = ..., comment: _Optional[str] = ..., history: _Optional[_Iterable[_Union[AlertHistoryEntry, _Mapping]]] = ...) -> None: ...

class AlertHistoryEntry(_message.Message):
    __slots__ = ("time_ns", "actor", "from_status", "to_status", "comment")
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    FROM_STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_STATUS_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    time_ns: int
    actor: str
    from_status: str
    to_status: str
    comment: str
    def __init__(self, time_ns: _Optional[int] = ..., actor: _Optional[str] = ..., from_status: _Optional[str] = ..., to_status: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class AlertQuery(_message.Message):
    __slots__ = ("image", "since_ns", "min_priority", "status", "limit", "cursor", "max_bytes", "namespace", "pod", "labels", "container", "rule", "process", "tag", "statuses")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SINCE_NS_FIELD_NUMBER: _ClassVar[int]
    MIN_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    image: str
    since_ns: int
    min_priority: str
    status: AlertStatus
    limit: int
    cursor: str
    max_bytes: int
    namespace: str
    pod: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    container: str
    rule: str
    process: str
    tag: str
    statuses: _containers.RepeatedScalarFieldContainer[AlertStatus]
    def __init__(self, image: _Optional[str] = ..., since_ns: _Optional[int] = ..., min_priority: _Optional[str] = ..., status: _Optional[_Union[AlertStatus, str]] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ..., max_bytes: _Optional[int] = ..., namespace: _Optional[str] = ..., pod: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., container: _Optional[str] = ..., rule: _Optional[str] = ..., process: _Optional[str] = ..., tag: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[AlertStatus, str]]] = ...) -> None: ...

class AlertList(_message.Message):
    __slots__ = ("alerts", "next_cursor")
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    next_cursor: str
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class AlertId(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class AlertUpdate(_message.Message):
    __slots__ = ("id", "status", "comment", "expect")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    EXPECT_FIELD_NUMBER: _ClassVar[int]
    id: int
    status: AlertStatus
    comment: str
    expect: bool
    def __init__(self, id: _Optional[int] = ..., status: _Optional[_Union[AlertStatus, str]] = ..., comment: _Optional[str] = ..., expect: _Optional[bool] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ImageInfo(_message.Message):
    __slots__ = ("image", "mode", "policy_yaml", "alerts", "learning", "set_by", "workload_policies")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    POLICY_YAML_FIELD_NUMBER: _ClassVar[int]
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_FIELD_NUMBER: _ClassVar[int]
    SET_BY_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_POLICIES_FIELD_NUMBER: _ClassVar[int]
    image: str
    mode: str
    policy_yaml: str
    alerts: int
    learning: str
    set_by: str
    workload_policies: str
    def __init__(self, image: _Optional[str] = ..., mode: _Optional[str] = ..., policy_yaml: _Optional[str] = ..., alerts: _Optional[int] = ..., learning: _Optional[str] = ..., set_by: _Optional[str] = ..., workload_policies: _Optional[str] = ...) -> None: ...

class ImageList(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[ImageInfo]
    def __init__(self, images: _Optional[_Iterable[_Union[ImageInfo, _Mapping]]] = ...) -> None: ...

class ImageModeRequest(_message.Message):
    __slots__ = ("image", "mode", "default_action", "banned_processes", "require_seen", "clear_bans", "namespace", "labels")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ACTION_FIELD_NUMBER: _ClassVar[int]
    BANNED_PROCESSES_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_SEEN_FIELD_NUMBER: _ClassVar[int]
    CLEAR_BANS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    image: str
    mode: str
    default_action: str
    banned_processes: _containers.RepeatedScalarFieldContainer[str]
    require_seen: bool
    clear_bans: bool
    namespace: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, image: _Optional[str] = ..., mode: _Optional[str] = ..., default_action: _Optional[str] = ..., banned_processes: _Optional[_Iterable[str]] = ..., require_seen: _Optional[bool] = ..., clear_bans: _Optional[bool] = ..., namespace: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class ContainerActionRequest(_message.Message):
    __slots__ = ("container_id", "action", "reason", "timeout_s")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    action: ActionKind
    reason: str
    timeout_s: float
    def __init__(self, container_id: _Optional[str] = ..., action: _Optional[_Union[ActionKind, str]] = ..., reason: _Optional[str] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class ActionReply(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: ActionResult
    def __init__(self, result: _Optional[_Union[ActionResult, _Mapping]] = ...) -> None: ...

class SensorInfo(_message.Message):
    __slots__ = ("sensor_id", "node", "version", "connected", "last_seen_ns", "counters", "collector")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SENSOR_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_NS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    COLLECTOR_FIELD_NUMBER: _ClassVar[int]
    sensor_id: str
    node: str
    version: str
    connected: bool
    last_seen_ns: int
    counters: _containers.ScalarMap[str, int]
    collector: str
    def __init__(self, sensor_id: _Optional[str] = ..., node: _Optional[str] = ..., version: _Optional[str] = ..., connected: _Optional[bool] = ..., last_seen_ns: _Optional[int] = ..., counters: _Optional[_Mapping[str, int]] = ..., collector: _Optional[str] = ...) -> None: ...

class SensorList(_message.Message):
    __slots__ = ("sensors",)
    SENSORS_FIELD_NUMBER: _ClassVar[int]
    sensors: _containers.RepeatedCompositeFieldContainer[SensorInfo]
    def __init__(self, sensors: _Optional[_Iterable[_Union[SensorInfo, _Mapping]]] = ...) -> None: ...

class AuditQuery(_message.Message):
    __slots__ = ("limit", "alert_id")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    limit: int
    alert_id: int
    def __init__(self, limit: _Optional[int] = ..., alert_id: _Optional[int] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("id", "time_ns", "actor", "action", "target", "reason", "result", "latency_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    id: int
    time_ns: int
    actor: str
    action: str
    target: str
    reason: str
    result: str
    latency_ms: float
    def __init__(self, id: _Optional[int] = ..., time_ns: _Optional[int] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., target: _Optional[str] = ..., reason: _Optional[str] = ..., result: _Optional[str] = ..., latency_ms: _Optional[float] = ...) -> None: ...

class AuditList(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

class RuleSetReply(_message.Message):
    __slots__ = ("name", "rules", "sensors")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    SENSORS_FIELD_NUMBER: _ClassVar[int]
    name: str
    rules: int
    sensors: int
    def __init__(self, name: _Optional[str] = ..., rules: _Optional[int] = ..., sensors: _Optional[int] = ...) -> None: ...

class RuleSetInfo(_message.Message):
    __slots__ = ("name", "yaml", "actor", "updated_ns")
    NAME_FIELD_NUMBER: _ClassVar[int]
    YAML_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    UPDATED_NS_FIELD_NUMBER: _ClassVar[int]
    name: str
    yaml: str
    actor: str
    updated_ns: int
    def __init__(self, name: _Optional[str] = ..., yaml: _Optional[str] = ..., actor: _Optional[str] = ..., updated_ns: _Optional[int] = ...) -> None: ...

class RuleSetList(_message.Message):
    __slots__ = ("sets",)
    SETS_FIELD_NUMBER: _ClassVar[int]
    sets: _containers.RepeatedCompositeFieldContainer[RuleSetInfo]
    def __init__(self, sets: _Optional[_Iterable[_Union[RuleSetInfo, _Mapping]]] = ...) -> None: ...
