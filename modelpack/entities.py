"""What the tracking store holds, as frozen dataclasses with the names MLflow users know.

Times are timezone-aware UTC datetimes; ``*_ms`` fields carry the same instant as epoch
milliseconds, which is what filters and metric timestamps use.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from modelpack.errors import InvalidArgument
from modelpack.uris import STAGES, model_uri

__all__ = [
    "STAGES",
    "Dataset",
    "DatasetInput",
    "Experiment",
    "HistoryRecord",
    "InputTag",
    "Metric",
    "ModelInfo",
    "ModelVersion",
    "PagedList",
    "Param",
    "RegisteredModel",
    "Run",
    "RunData",
    "RunInfo",
    "RunInputs",
    "RunStatus",
    "RunTag",
    "ViewType",
    "canonical_stage",
    "ended_message",
    "at_ms",
    "from_ms",
    "to_ms",
]

RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")


class RunStatus:
    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


def ended_message(run_id: str, status: str) -> str:
    """Why an ended run takes no more logging, and the two ways on."""
    return (
        f"Run {run_id!r} has ended ({status}); start a new run to log more, or resume this one "
        f"with start_run(run_id={run_id!r}). (MLflow would have written into the ended run; "
        f"modelpack does not change a run's record after it ended.)"
    )


class ViewType:
    """Which runs or experiments a search returns. MLflow's integers (1, 2, 3) work too."""

    ACTIVE_ONLY = "ACTIVE_ONLY"
    DELETED_ONLY = "DELETED_ONLY"
    ALL = "ALL"

    @staticmethod
    def check(view: Any) -> str:
        """``view`` as one of the three names (MLflow's ``ViewType.ALL`` is 3, and so on)."""
        by_number = {1: ViewType.ACTIVE_ONLY, 2: ViewType.DELETED_ONLY, 3: ViewType.ALL}
        if isinstance(view, int) and not isinstance(view, bool) and view in by_number:
            return by_number[view]
        if isinstance(view, str) and view.upper() in by_number.values():
            return view.upper()
        raise InvalidArgument(
            f"view type must be ACTIVE_ONLY, DELETED_ONLY or ALL (or MLflow's 1, 2, 3), got "
            f"{view!r}."
        )


def canonical_stage(stage: str | None) -> str:
    """``"production"`` -> ``"Production"``; raises ``InvalidArgument`` for an unknown stage."""

    text = "None" if stage is None else str(stage)
    for name in STAGES:
        if name.lower() == text.strip().lower():
            return name
    raise InvalidArgument(f"Unknown stage {stage!r}. Stages: {', '.join(STAGES)}.")


def to_ms(when: _dt.datetime) -> int:
    return int(when.timestamp() * 1000)


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def _exact_ms(when: _dt.datetime) -> int:
    """Epoch milliseconds in integer arithmetic (a float timestamp can land one ms short)."""
    return (when - _EPOCH) // _dt.timedelta(milliseconds=1)


def now_ms() -> int:
    """Now, in milliseconds since the epoch (how the store keeps every time)."""
    return int(time.time() * 1000)


def at_ms(ms: int) -> _dt.datetime:
    """Epoch milliseconds as an aware UTC datetime."""
    return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.UTC)


def from_ms(ms: int | None) -> _dt.datetime | None:
    return None if ms is None else at_ms(ms)


class _Dict:
    def to_dict(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            if isinstance(v, _dt.datetime):
                return v.isoformat()
            if isinstance(v, Mapping):
                return {k: plain(x) for k, x in v.items()}
            if isinstance(v, list | tuple):
                return [plain(x) for x in v]
            return v

        return {k: plain(v) for k, v in asdict(self).items()}  # type: ignore[call-overload]


@dataclass(frozen=True)
class Experiment(_Dict):
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    creation_time: _dt.datetime
    tags: Mapping[str, str] = field(default_factory=dict)
    last_update_time: _dt.datetime | None = None

    @property
    def creation_time_ms(self) -> int:
        """``creation_time`` in epoch milliseconds (what MLflow's ``creation_time`` is)."""
        return _exact_ms(self.creation_time)


@dataclass(frozen=True)
class Metric(_Dict):
    key: str
    value: float
    timestamp: int
    step: int


@dataclass(frozen=True)
class Param(_Dict):
    """A param for ``Client.log_batch(params=[...])`` (MLflow's ``Param``)."""

    key: str
    value: str


@dataclass(frozen=True)
class RunTag(_Dict):
    """A tag for ``Client.log_batch(tags=[...])`` (MLflow's ``RunTag``)."""

    key: str
    value: str


@dataclass(frozen=True)
class RunInfo(_Dict):
    """A run's attributes.

    ``start_time`` and ``end_time`` are aware UTC datetimes, where MLflow has epoch
    milliseconds (ints): ``start_time_ms`` and ``end_time_ms`` give MLflow's numbers.
    """

    run_id: str
    experiment_id: str
    run_name: str
    user_id: str
    status: str
    start_time: _dt.datetime
    end_time: _dt.datetime | None
    artifact_uri: str
    lifecycle_stage: str
    parent_run_id: str | None = None

    @property
    def run_uuid(self) -> str:  # MLflow's older name for run_id
        return self.run_id

    @property
    def start_time_ms(self) -> int:
        """``start_time`` in milliseconds since the epoch (what MLflow's ``start_time`` is)."""
        return _exact_ms(self.start_time)

    @property
    def end_time_ms(self) -> int | None:
        """``end_time`` in milliseconds since the epoch, or None while the run is running."""
        return None if self.end_time is None else _exact_ms(self.end_time)


@dataclass(frozen=True)
class RunData(_Dict):
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InputTag(_Dict):
    key: str
    value: str


@dataclass(frozen=True)
class Dataset(_Dict):
    """A dataset as the store records it (MLflow's ``mlflow.entities.Dataset``): ``source``,
    ``schema`` and ``profile`` are JSON strings."""

    name: str
    digest: str
    source_type: str
    source: str
    schema: str | None = None
    profile: str | None = None


@dataclass(frozen=True)
class DatasetInput(_Dict):
    """A dataset a run used, with the input's tags (``mlflow.data.context``: "training"...)."""

    dataset: Dataset
    tags: tuple[InputTag, ...] = ()


@dataclass(frozen=True)
class RunInputs(_Dict):
    dataset_inputs: tuple[DatasetInput, ...] = ()


@dataclass(frozen=True)
class Run(_Dict):
    info: RunInfo
    data: RunData
    inputs: RunInputs = field(default_factory=RunInputs)


@dataclass(frozen=True)
class ModelVersion(_Dict):
    name: str
    version: int
    stage: str
    aliases: tuple[str, ...]
    source: str
    run_id: str | None
    model_id: str
    description: str
    tags: Mapping[str, str]
    created_at: _dt.datetime
    updated_at: _dt.datetime
    user_id: str
    storage_location: str
    status: str = "READY"
    manifest_sha256: str = ""  # of modelpack.yaml: with model_id, the cache key of the package

    @property
    def current_stage(self) -> str:  # MLflow's name for the same thing
        return self.stage

    @property
    def creation_timestamp(self) -> int:  # MLflow's: epoch milliseconds
        return _exact_ms(self.created_at)

    @property
    def last_updated_timestamp(self) -> int:  # MLflow's: epoch milliseconds
        return _exact_ms(self.updated_at)

    @property
    def uri(self) -> str:
        return model_uri(self.name, self.version)


@dataclass(frozen=True)
class RegisteredModel(_Dict):
    name: str
    description: str
    tags: Mapping[str, str]
    aliases: Mapping[str, int]
    created_at: _dt.datetime
    updated_at: _dt.datetime
    latest_versions: tuple[ModelVersion, ...] = ()

    @property
    def creation_timestamp(self) -> int:  # MLflow's: epoch milliseconds
        return _exact_ms(self.created_at)

    @property
    def last_updated_timestamp(self) -> int:  # MLflow's: epoch milliseconds
        return _exact_ms(self.updated_at)


@dataclass(frozen=True)
class HistoryRecord(_Dict):
    """One stage transition or alias move (or a version created or deleted); never rewritten."""

    name: str
    version: int | None
    action: str  # "create", "stage", "alias", "delete_alias", "delete", "rename"
    from_value: str | None
    to_value: str | None
    user_id: str
    timestamp: _dt.datetime
    comment: str | None = None


@dataclass(frozen=True)
class ModelInfo(_Dict):
    """What ``log_model`` returns."""

    model_uri: str
    run_id: str
    artifact_path: str
    manifest: Any
    registered_model_version: ModelVersion | None = None

    @property
    def model_id(self) -> str:
        return str(self.manifest.model_id)

    # MLflow's ModelInfo fields, from the manifest.
    @property
    def name(self) -> str:
        return self.artifact_path

    @property
    def model_uuid(self) -> str:
        return str(self.manifest.model_id)

    @property
    def signature(self) -> Any:
        return self.manifest.signature

    @property
    def flavors(self) -> Mapping[str, Any]:
        return self.manifest.flavors

    @property
    def metadata(self) -> Mapping[str, Any]:
        return self.manifest.metadata

    @property
    def utc_time_created(self) -> str:
        """When the package was saved, as MLflow writes it (``2026-01-31 12:00:00.123456``)."""
        return self.manifest.created_at.astimezone(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    @property
    def saved_input_example_info(self) -> dict[str, str] | None:
        example = self.manifest.input_example
        return None if example is None else {"artifact_path": example, "type": "json_object"}


class PagedList(list):
    """A page of results; ``token`` fetches the next page (``None`` on the last)."""

    def __init__(self, items: Iterable[Any], token: str | None) -> None:
        super().__init__(items)
        self.token = token
