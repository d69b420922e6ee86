"""The fluent experiment calls (MLflow's): ``set_experiment``, ``create_experiment``,
``get_experiment(_by_name)``, ``search_experiments``, ``delete_experiment``.

The current experiment is process-wide, kept where a user would set it by hand:
``MODELPACK_EXPERIMENT_ID`` or ``MODELPACK_EXPERIMENT_NAME`` (the first wins), else "Default".
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from modelpack.client import Client
from modelpack.entities import Experiment, ViewType
from modelpack.errors import InvalidArgument, NotFound

__all__ = [
    "DEFAULT_EXPERIMENT",
    "create_experiment",
    "current_experiment",
    "delete_experiment",
    "get_experiment",
    "get_experiment_by_name",
    "search_experiments",
    "set_experiment",
]

DEFAULT_EXPERIMENT = "Default"
ID_VARIABLE = "MODELPACK_EXPERIMENT_ID"
NAME_VARIABLE = "MODELPACK_EXPERIMENT_NAME"


def _active(experiment: Experiment) -> Experiment:
    if experiment.lifecycle_stage != "active":
        raise InvalidArgument(
            f"Experiment {experiment.name!r} is deleted; restore it with "
            f"Client().restore_experiment({experiment.experiment_id!r}) or use another name."
        )
    return experiment


def current_experiment(client: Client) -> Experiment:
    """The experiment new runs go to (created by name on first use)."""
    experiment_id = os.environ.get(ID_VARIABLE)
    if experiment_id:
        try:
            return _active(client.get_experiment(experiment_id))
        except NotFound:
            raise NotFound(
                f"No experiment with id {experiment_id!r} (from {ID_VARIABLE}). Call "
                f"set_experiment() with an existing one, or unset {ID_VARIABLE}."
            ) from None
    name = os.environ.get(NAME_VARIABLE) or DEFAULT_EXPERIMENT
    return _active(client.store.get_or_create_experiment(name))


def set_experiment(
    experiment_name: str | None = None, experiment_id: str | None = None
) -> Experiment:
    """Log new runs into this experiment: by name (created if there is none) or by id (which
    must exist). Returns the ``Experiment``, as MLflow does."""
    from modelpack.store.validation import name as check_name

    if (experiment_name is None) == (experiment_id is None):
        raise InvalidArgument(
            "set_experiment takes experiment_name or experiment_id, exactly one of them."
        )
    client = Client()
    if experiment_id is not None:
        experiment = _active(client.get_experiment(str(experiment_id)))
        os.environ[ID_VARIABLE] = experiment.experiment_id
        os.environ.pop(NAME_VARIABLE, None)
        return experiment
    check_name(experiment_name, "Experiment name")
    assert experiment_name is not None
    experiment = _active(client.store.get_or_create_experiment(experiment_name))
    os.environ[NAME_VARIABLE] = experiment_name
    os.environ.pop(ID_VARIABLE, None)
    return experiment


def create_experiment(
    name: str, artifact_location: str | None = None, tags: Mapping[str, Any] | None = None
) -> str:
    """Create an experiment; returns its id (``AlreadyExists`` if the name is taken)."""
    return Client().create_experiment(name, artifact_location, tags)


def get_experiment(experiment_id: str) -> Experiment:
    return Client().get_experiment(experiment_id)


def get_experiment_by_name(name: str) -> Experiment | None:
    return Client().get_experiment_by_name(name)


def delete_experiment(experiment_id: str) -> None:
    """Mark the experiment and its runs deleted (``Client().restore_experiment`` undoes it)."""
    Client().delete_experiment(experiment_id)


def search_experiments(
    view_type: str | int = ViewType.ACTIVE_ONLY,
    max_results: int | None = None,
    filter_string: str | None = None,
    order_by: Sequence[str] | None = None,
) -> list[Experiment]:
    """Every experiment matching ``filter_string`` (all pages; at most ``max_results``)."""
    if max_results is not None and (
        isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1
    ):
        raise InvalidArgument(f"max_results must be a positive integer, got {max_results!r}.")
    client = Client()
    found: list[Experiment] = []
    token = None
    while max_results is None or len(found) < max_results:
        size = 1000 if max_results is None else min(1000, max_results - len(found))
        page = client.search_experiments(view_type, size, filter_string, order_by, token)
        found.extend(page)
        token = page.token
        if token is None:
            break
    return found
