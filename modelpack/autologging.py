"""Autologging: each scikit-learn ``fit`` logged into a run, as ``mlflow.sklearn.autolog`` does.

``autolog_sklearn()`` wraps the fitting methods (``fit``, ``fit_transform``, ``fit_predict``) of
scikit-learn's estimators, ``Pipeline``, ``GridSearchCV`` and ``RandomizedSearchCV``;
``disable=True`` puts the originals back. A wrapped fit uses the active run (or starts one and
ends it when the fit returns, FAILED if it raised), logs the estimator's params and tags and the
training data (``log_input``), runs the real fit, then logs the training metrics and the fitted
model with an input example and signature. A search also logs its best params and score, its
best estimator, and one child run per candidate (the best ``max_tuning_runs``, best first).

Only the outermost fit logs: the fits a Pipeline or a search makes inside its own are plain
fits. "Inside" is process-wide, as in MLflow, because joblib's thread workers do not inherit the
caller's context. Logging never breaks a fit: what fails in it is one ``UserWarning`` naming each
failed step, and the fit's own exception propagates unchanged.
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from modelpack.autolog_session import AUTOLOG_TAG, FLAVOR, Options
from modelpack.errors import InvalidArgument, MissingDependency

__all__ = ["autolog", "autolog_sklearn"]

FIT_METHODS = ("fit", "fit_transform", "fit_predict")
# Data-manipulation routines are logged only as part of a model (MLflow's list).
EXCLUDED_MODULES = (
    "sklearn.preprocessing",
    "sklearn.impute",
    "sklearn.feature_extraction",
    "sklearn.feature_selection",
)
EXCLUDED_CLASSES = ("sklearn.compose._column_transformer.ColumnTransformer",)
# These fit clones of an estimator many times to measure it: no run per clone (as MLflow).
UNLOGGED_CALLERS = (
    "cross_validate",
    "cross_val_predict",
    "cross_val_score",
    "learning_curve",
    "permutation_test_score",
    "validation_curve",
)
# MLflow's serialization_format -> the sklearn flavor's serialization (a cloudpickle file is
# what pickle.load reads, so MLflow's "pickle" is written with cloudpickle).
SERIALIZATIONS = {"cloudpickle": "cloudpickle", "pickle": "cloudpickle", "skops": "skops"}
# scikit-learn releases this module was tested with (major, minor), inclusive.
SUPPORTED_SKLEARN = ((1, 3), (1, 9))


class _Patched:
    """Stands in a class's ``__dict__`` for one fitting method. The original is looked up
    through its own descriptor protocol, so an ``available_if`` method an instance lacks stays
    missing (``hasattr`` is unchanged), and ``inspect.signature`` sees the original's."""

    def __init__(self, original: Any, name: str) -> None:
        self.original = original
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        bound = self.original.__get__(obj, owner)
        name = self.name
        if obj is None:  # Class.fit(estimator, X, y)

            @functools.wraps(bound)
            def unbound(estimator: Any, *args: Any, **kwargs: Any) -> Any:
                return _fit(estimator, name, functools.partial(bound, estimator), args, kwargs)

            return unbound

        @functools.wraps(bound)
        def method(*args: Any, **kwargs: Any) -> Any:
            return _fit(obj, name, bound, args, kwargs)

        return method


class _Autologger:
    """The process's autologging state: which methods are patched, with which options, and
    whether an autologged fit is running. Autologging patches a library process-wide, so its
    state is too; only ``autolog_sklearn`` and the patched fits change it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.options: Options | None = None
        self.originals: dict[tuple[type, str], Any] = {}
        self.loggable: frozenset[type] = frozenset()
        self.unlogged_codes: frozenset[Any] = frozenset()
        self.fitting = 0
        self.targets: tuple[frozenset[type], list[tuple[type, str]], frozenset[Any]] | None = None

    def install(self, options: Options) -> None:
        # Walking all of scikit-learn takes a second or two; its classes do not change.
        self.targets = self.targets or _targets()
        loggable, owners, codes = self.targets
        with self.lock:
            for owner, name in owners:
                if (owner, name) not in self.originals:
                    original = owner.__dict__[name]
                    self.originals[owner, name] = original
                    setattr(owner, name, _Patched(original, name))
            self.loggable, self.unlogged_codes, self.options = loggable, codes, options

    def uninstall(self) -> None:
        with self.lock:
            for (owner, name), original in self.originals.items():
                setattr(owner, name, original)
            self.originals.clear()
            self.options = None

    def claim(self, estimator: Any) -> Options | None:
        """The options to log this fit with, or None when it must not log: autologging is
        off, another autologged fit is running, the estimator is not a model, or the fit is
        one of many a cross-validation helper makes."""
        with self.lock:
            options = self.options
            if options is None or self.fitting:
                return None
            if not any(cls in self.loggable for cls in type(estimator).__mro__):
                return None
            if _called_from(self.unlogged_codes):
                return None
            if options.exclusive:
                from modelpack.tracking import active_run

                if active_run() is not None:
                    return None
            self.fitting += 1
            return options

    def release(self) -> None:
        with self.lock:
            self.fitting -= 1


_STATE = _Autologger()


def _fit(estimator: Any, method: str, call: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    options = _STATE.claim(estimator)
    if options is None:
        return call(*args, **kwargs)
    try:
        from modelpack.autolog_session import Session

        return Session(estimator, method, options).fit(call, args, kwargs)
    finally:
        _STATE.release()


def _called_from(codes: frozenset[Any]) -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _excluded(cls: type) -> bool:
    return cls.__module__.startswith(EXCLUDED_MODULES) or (
        f"{cls.__module__}.{cls.__qualname__}" in EXCLUDED_CLASSES
    )


def _targets() -> tuple[frozenset[type], list[tuple[type, str]], frozenset[Any]]:
    """The estimator classes that log, the (class, method) pairs that define their fitting
    methods (often a base class: ``BaseForest.fit``), and the code objects of the helpers
    whose fits do not log."""
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, _validation
    from sklearn.pipeline import Pipeline
    from sklearn.utils import all_estimators

    classes = {cls for _, cls in all_estimators()} | {GridSearchCV, RandomizedSearchCV, Pipeline}
    loggable = frozenset(cls for cls in classes if not _excluded(cls))
    owners: list[tuple[type, str]] = []
    for cls in sorted(loggable, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
        for name in FIT_METHODS:
            owner = next((c for c in cls.__mro__ if name in c.__dict__), None)
            if owner is not None and owner is not object and (owner, name) not in owners:
                owners.append((owner, name))
    codes = frozenset(
        inspect.unwrap(getattr(_validation, name)).__code__
        for name in UNLOGGED_CALLERS
        if hasattr(_validation, name)
    )
    return loggable, owners, codes


def _sklearn_version() -> tuple[int, int] | None:
    import sklearn

    match = re.match(r"(\d+)\.(\d+)", sklearn.__version__)
    return (int(match[1]), int(match[2])) if match else None


def autolog_sklearn(
    log_input_examples: bool = True,
    log_model_signatures: bool = True,
    log_models: bool = True,
    log_datasets: bool = True,
    disable: bool = False,
    exclusive: bool = False,
    disable_for_unsupported_versions: bool = False,
    silent: bool = False,
    max_tuning_runs: int | None = 5,
    log_post_training_metrics: bool = False,
    serialization_format: str = "cloudpickle",
    registered_model_name: str | None = None,
    pos_label: Any = None,
    extra_tags: Mapping[str, Any] | None = None,
) -> None:
    """Log every scikit-learn ``fit`` from now on (``mlflow.sklearn.autolog``).

    Each outermost ``fit``/``fit_transform``/``fit_predict`` of an estimator, a ``Pipeline`` or
    a search logs into the active run (or a run it starts and ends): params
    (``get_params(deep=True)``; a search logs its own shallowly, plus ``best_<param>``), tags
    ``estimator_name`` and ``estimator_class``, the training data as an input with context
    ``train``, training metrics (``training_score``; classifiers: accuracy, weighted precision,
    recall and f1, log loss and ROC AUC where ``predict_proba`` exists; regressors: mse, rmse,
    mae, r2), the model at ``model`` (a search's best estimator at ``best_estimator`` too),
    ``estimator.html``, and for a search ``best_cv_score``, ``cv_results.csv`` and child runs.

    Args:
        log_input_examples: store the first 5 training rows as the model's input example
            (MLflow's default is False; the signature is inferred from those rows either way).
        log_model_signatures: infer and store the model's signature.
        log_models: log the fitted model (without it, no example and no signature either).
        log_datasets: ``log_input`` the training data (numpy arrays and DataFrames).
        disable: turn autologging off and restore scikit-learn's own methods.
        exclusive: log nothing into runs the user started; only into runs autologging starts.
        disable_for_unsupported_versions: do nothing on a scikit-learn release outside the
            tested range (1.3 to 1.9) instead of warning and logging anyway.
        silent: no warnings from autologging (failed steps, unsupported versions, warnings the
            logging code itself triggers); the fit's own warnings still show.
        max_tuning_runs: child runs for the best this-many candidates of a search (``None``:
            all of them).
        log_post_training_metrics: only False. MLflow (default True) logs later
            ``sklearn.metrics`` calls on the model's predictions into the fit's run; here that
            run has ended with the fit, and a finished run refuses new metrics. Log them with
            ``modelpack.log_metric`` inside a ``start_run()`` block instead.
        serialization_format: "cloudpickle" (MLflow's "pickle" is written as cloudpickle) or
            "skops".
        registered_model_name: register each logged ``model`` as a new version of this name.
        pos_label: the positive class for binary precision, recall and f1 (default: their
            averages weighted by support).
        extra_tags: tags set on each run autologging starts.

    Raises:
        InvalidArgument: a bad ``max_tuning_runs``, ``serialization_format`` or ``extra_tags``,
            or ``log_post_training_metrics=True``.
        MissingDependency: scikit-learn is not installed.
    """
    if disable:
        _STATE.uninstall()
        return
    if max_tuning_runs is not None and (
        isinstance(max_tuning_runs, bool) or not isinstance(max_tuning_runs, int)
    ):
        raise InvalidArgument(
            f"max_tuning_runs must be a whole number or None, got {max_tuning_runs!r}."
        )
    if max_tuning_runs is not None and max_tuning_runs < 0:
        raise InvalidArgument(f"max_tuning_runs must be 0 or more, got {max_tuning_runs}.")
    if log_post_training_metrics:
        raise InvalidArgument(
            "log_post_training_metrics=True is not supported: MLflow logs sklearn.metrics "
            "calls made after fit into the fit's run, but the run autologging starts ends with "
            "the fit, and a finished run refuses new metrics. Compute them and log them with "
            "modelpack.log_metric() inside a modelpack.start_run() block."
        )
    if serialization_format not in SERIALIZATIONS:
        raise InvalidArgument(
            f"Unknown serialization_format {serialization_format!r}. Choose one of: "
            f"{', '.join(SERIALIZATIONS)}."
        )
    if extra_tags is not None and not isinstance(extra_tags, Mapping):
        raise InvalidArgument(f"extra_tags must be a dict, got {type(extra_tags).__name__}.")
    tags = {str(k): str(v) for k, v in (extra_tags or {}).items()}
    if AUTOLOG_TAG in tags:
        raise InvalidArgument(f"extra_tags may not set {AUTOLOG_TAG!r}: autologging sets it.")
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise MissingDependency(
            "Autologging scikit-learn needs scikit-learn. Install it with: "
            "pip install 'modelpack[sklearn]'",
            FLAVOR,
            "sklearn",
        ) from None
    version = _sklearn_version()
    low, high = SUPPORTED_SKLEARN
    if version is None or not low <= version <= high:
        if disable_for_unsupported_versions:
            _STATE.uninstall()
            return
        if not silent:
            warnings.warn(
                f"modelpack autologging is tested with scikit-learn {low[0]}.{low[1]} to "
                f"{high[0]}.{high[1]}; this is {sys.modules['sklearn'].__version__}. It logs "
                f"anyway; pass disable_for_unsupported_versions=True to turn it off instead.",
                UserWarning,
                stacklevel=2,
            )
    options = Options(
        log_input_examples=bool(log_input_examples),
        log_model_signatures=bool(log_model_signatures),
        log_models=bool(log_models),
        log_datasets=bool(log_datasets),
        exclusive=bool(exclusive),
        silent=bool(silent),
        max_tuning_runs=max_tuning_runs,
        serialization=SERIALIZATIONS[serialization_format],
        registered_model_name=registered_model_name,
        pos_label=pos_label,
        extra_tags=tags,
    )
    _STATE.install(options)


def autolog(
    log_input_examples: bool = True,
    log_model_signatures: bool = True,
    log_models: bool = True,
    log_datasets: bool = True,
    log_traces: bool = True,
    disable: bool = False,
    exclusive: bool = False,
    disable_for_unsupported_versions: bool = False,
    silent: bool = False,
    extra_tags: Mapping[str, Any] | None = None,
    exclude_flavors: Sequence[str] | None = None,
) -> None:
    """Autolog every supported library that is installed (``mlflow.autolog``): today
    scikit-learn (see ``autolog_sklearn`` for what is logged).

    ``log_traces`` is accepted for ported scripts; modelpack records no traces, so it changes
    nothing. ``exclude_flavors`` names libraries to leave alone (e.g. ``["sklearn"]``); names
    of libraries modelpack does not autolog are ignored, as MLflow ignores those not installed.
    A library that is not installed is skipped.

    Example:
        >>> modelpack.autolog()
        >>> RandomForestClassifier().fit(X, y)  # a run with params, metrics and the model
    """
    del log_traces  # no tracing in modelpack
    if exclude_flavors is not None and (
        isinstance(exclude_flavors, str) or not all(isinstance(f, str) for f in exclude_flavors)
    ):
        raise InvalidArgument(
            f"exclude_flavors must be a list of names such as ['sklearn'], got {exclude_flavors!r}."
        )
    if FLAVOR in (exclude_flavors or ()):
        return
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return
    autolog_sklearn(
        log_input_examples=log_input_examples,
        log_model_signatures=log_model_signatures,
        log_models=log_models,
        log_datasets=log_datasets,
        disable=disable,
        exclusive=exclusive,
        disable_for_unsupported_versions=disable_for_unsupported_versions,
        silent=silent,
        extra_tags=extra_tags,
    )
