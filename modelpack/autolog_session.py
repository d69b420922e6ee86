"""One autologged fit: what is logged before and after scikit-learn's own ``fit`` runs.

Every step runs in ``Session.step``, which turns an error into a line of the one warning the fit
gives (so a failing store, an unserialisable model or an undefined metric never breaks the
user's fit), and skips what needs a run once starting one has failed.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import numbers
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelpack import tracking

__all__ = ["Options", "Session", "estimator_tags", "param_values", "training_metrics"]

FLAVOR = "sklearn"
# Run tag on the runs autologging starts (MLflow: mlflow.autologging).
AUTOLOG_TAG = "modelpack.autologging"
EXAMPLE_ROWS = 5
PREFIX = "training_"
# Columns of cv_results_ that are not a candidate's metrics (params, per-split scores).
NOT_METRICS = ("param", "split")


@dataclass(frozen=True)
class Options:
    """What ``autolog_sklearn`` was last called with (see its docstring)."""

    log_input_examples: bool = True
    log_model_signatures: bool = True
    log_models: bool = True
    log_datasets: bool = True
    exclusive: bool = False
    silent: bool = False
    max_tuning_runs: int | None = 5
    serialization: str = "cloudpickle"
    registered_model_name: str | None = None
    pos_label: Any = None
    extra_tags: Mapping[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def quiet(silent: bool) -> Iterator[None]:
    """Hide the warnings autologging's own code triggers when ``silent``."""
    if not silent:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def example_rows(X: Any) -> Any:
    """A copy of the first rows of ``X`` (array, DataFrame or list), or None for other types."""
    if hasattr(X, "iloc"):
        return X.iloc[:EXAMPLE_ROWS].copy()
    if type(X).__module__ == "numpy" and hasattr(X, "shape"):
        return copy.deepcopy(X[:EXAMPLE_ROWS])
    if isinstance(X, list):
        return copy.deepcopy(X[:EXAMPLE_ROWS])
    return None


def param_values(params: Mapping[str, Any]) -> dict[str, str]:
    """Params as MLflow logs them: ``str(value)``, keys and values cut to the store's limits."""
    from modelpack.store.validation import MAX_NAME, MAX_VALUE

    return {str(k)[:MAX_NAME]: str(v)[:MAX_VALUE] for k, v in params.items()}


def estimator_tags(estimator: Any) -> dict[str, str]:
    cls = type(estimator)
    return {"estimator_name": cls.__name__, "estimator_class": f"{cls.__module__}.{cls.__name__}"}


def is_search(estimator: Any) -> bool:
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

    return isinstance(estimator, GridSearchCV | RandomizedSearchCV)


def _weighted(fn: Callable[..., Any], sample_weight: Any) -> Callable[..., Any]:
    if sample_weight is None:
        return fn
    return lambda *args, **kwargs: fn(*args, sample_weight=sample_weight, **kwargs)


def training_metrics(
    estimator: Any, X: Any, y: Any, sample_weight: Any, pos_label: Any
) -> Iterator[tuple[str, Callable[[], float]]]:
    """(metric key, how to compute it) for a fitted classifier or regressor, as MLflow's
    autolog computes them; each is computed (and may fail) on its own."""
    import numpy as np
    from sklearn import metrics
    from sklearn.base import is_classifier, is_regressor

    predicted: list[Any] = []

    def y_pred() -> Any:
        if not predicted:
            predicted.append(estimator.predict(X))
        return predicted[0]

    if is_classifier(estimator):
        average = {"average": "weighted"} if pos_label is None else {"pos_label": pos_label}
        for name, fn in (
            ("precision_score", metrics.precision_score),
            ("recall_score", metrics.recall_score),
            ("f1_score", metrics.f1_score),
        ):
            score = _weighted(fn, sample_weight)
            yield PREFIX + name, functools.partial(lambda f: f(y, y_pred(), **average), score)
        accuracy = _weighted(metrics.accuracy_score, sample_weight)
        yield PREFIX + "accuracy_score", lambda: accuracy(y, y_pred())
        if hasattr(estimator, "predict_proba"):
            proba = estimator.predict_proba(X)
            log_loss = _weighted(metrics.log_loss, sample_weight)
            yield PREFIX + "log_loss", lambda: log_loss(y, proba)
            roc_auc = _weighted(metrics.roc_auc_score, sample_weight)
            if proba.shape[1] == 2:  # binary: the score of the greater label
                yield PREFIX + "roc_auc", lambda: roc_auc(y, proba[:, 1])
            else:
                yield (
                    PREFIX + "roc_auc",
                    lambda: roc_auc(y, proba, average="weighted", multi_class="ovo"),
                )
    elif is_regressor(estimator):
        mse = _weighted(metrics.mean_squared_error, sample_weight)
        mae = _weighted(metrics.mean_absolute_error, sample_weight)
        r2 = _weighted(metrics.r2_score, sample_weight)
        yield PREFIX + "mean_squared_error", lambda: mse(y, y_pred())
        yield PREFIX + "root_mean_squared_error", lambda: np.sqrt(mse(y, y_pred()))
        yield PREFIX + "mean_absolute_error", lambda: mae(y, y_pred())
        yield PREFIX + "r2_score", lambda: r2(y, y_pred())
    if hasattr(estimator, "score"):
        takes_weight = "sample_weight" in inspect.signature(estimator.score).parameters
        if takes_weight and sample_weight is not None:
            yield PREFIX + "score", lambda: estimator.score(X, y, sample_weight=sample_weight)
        else:
            yield PREFIX + "score", lambda: estimator.score(X, y)


def fit_data(call: Callable[..., Any], args: tuple, kwargs: dict) -> tuple[Any, Any, Any]:
    """(X, y, sample_weight) from a fit's arguments; copies, so the fit cannot change them."""
    try:
        signature = inspect.signature(call)
        bound = signature.bind_partial(*args, **kwargs).arguments
    except (TypeError, ValueError):  # the fit itself will say what is wrong with its call
        return None, None, None
    positional = [
        p.name
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    X = bound.get(positional[0]) if positional else None
    y = bound.get(positional[1]) if len(positional) > 1 else None
    return copy.deepcopy(X), copy.deepcopy(y), bound.get("sample_weight")


def dataset_of(X: Any, y: Any) -> Any:
    """The ``modelpack.data`` dataset for training data, or None for types it does not take
    (sparse matrices are not densified: that could need more memory than the fit)."""
    import numpy as np

    from modelpack import data

    if hasattr(X, "iloc") and hasattr(X, "columns"):
        return data.from_pandas(X)
    if isinstance(X, np.ndarray):
        targets = None if y is None else np.asarray(y)
        return data.from_numpy(X, targets=targets)
    return None


class Session:
    """Logs one outermost fit of ``estimator`` with ``options``."""

    def __init__(self, estimator: Any, method: str, options: Options) -> None:
        self.estimator = estimator
        self.method = method
        self.options = options
        self.run: tracking.ActiveRun | None = None
        self.owns_run = False
        self.failures: list[str] = []
        self.X = self.y = self.sample_weight = self.example = self.dataset = None

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        try:
            with quiet(self.options.silent):
                yield
        except Exception as exc:  # logging must never break the fit
            self.failures.append(f"{what} ({type(exc).__name__}: {exc})")

    def fit(self, call: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        self.before(call, args, kwargs)
        try:
            result = call(*args, **kwargs)
        except BaseException as exc:
            self.finish(exc)
            raise
        self.finish(None)
        return result

    # ------------------------------------------------------------------ before the fit

    def before(self, call: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        with self.step("start a run"):
            active = tracking.active_run()
            if active is None:
                active = tracking.start_run(tags={AUTOLOG_TAG: FLAVOR, **self.options.extra_tags})
                self.owns_run = True
            self.run = active
        if self.run is None:
            return
        with self.step("read the training data"):
            self.X, self.y, self.sample_weight = fit_data(call, args, kwargs)
            self.example = example_rows(self.X)
        with self.step("log params and tags"):
            params = self.estimator.get_params(deep=not is_search(self.estimator))
            self.run.client.log_batch(
                self.run.info.run_id,
                params=param_values(params),
                tags=estimator_tags(self.estimator),
            )
        if self.options.log_datasets and self.X is not None:
            with self.step("log the training data as an input"):
                self.dataset = dataset_of(self.X, self.y)
                if self.dataset is not None:
                    tracking.log_input(self.dataset, context="train")

    # ------------------------------------------------------------------ after the fit

    def finish(self, error: BaseException | None) -> None:
        try:
            if self.run is not None and error is None:
                self.after()
        except BaseException as interrupt:  # KeyboardInterrupt while logging: KILLED
            self.end(interrupt)
            raise
        self.end(error)
        self.report(error)

    def end(self, error: BaseException | None) -> None:
        """End the run this fit started (FAILED if the fit raised), never the user's."""
        if self.owns_run and self.run is not None:
            with self.step("end the run"):
                self.run.__exit__(type(error) if error else None, error, None)
            self.owns_run = False

    def after(self) -> None:
        est, run = self.estimator, self.run
        assert run is not None
        run_id = run.info.run_id
        metrics: dict[str, float] = {}
        if self.y is not None:
            with self.step("compute the training metrics"):
                for key, compute in training_metrics(
                    est, self.X, self.y, self.sample_weight, self.options.pos_label
                ):
                    with self.step(f"compute {key}"):
                        metrics[key] = float(compute())
        params: dict[str, Any] = {}
        if is_search(est):
            with self.step("read the search's best score and params"):
                if hasattr(est, "best_score_"):
                    metrics["best_cv_score"] = float(est.best_score_)
                params = {f"best_{k}": v for k, v in getattr(est, "best_params_", {}).items()}
        if metrics or params:
            with self.step("log the training metrics"):
                run.client.log_batch(
                    run_id,
                    metrics=[(k, v, None, 0) for k, v in metrics.items()],
                    params=param_values(params),
                )
        if self.options.log_models:
            with self.step("log the model"):
                self.log_model(est, "model", self.options.registered_model_name)
            if is_search(est) and hasattr(est, "best_estimator_"):
                with self.step("log the best estimator"):
                    self.log_model(est.best_estimator_, "best_estimator", None)
        with self.step("log estimator.html"):
            from sklearn.utils import estimator_html_repr

            page = '<!DOCTYPE html>\n<html lang="en"><head><meta charset="UTF-8"/></head>'
            page += f"<body>{estimator_html_repr(est)}</body></html>\n"
            self.log_file("estimator.html", page)
        if is_search(est) and hasattr(est, "cv_results_"):
            with self.step("log the search's candidates as child runs"):
                self.child_runs(est)
            with self.step("log cv_results.csv"):
                import pandas as pd

                self.log_file("cv_results.csv", pd.DataFrame(est.cv_results_).to_csv(index=False))

    def log_model(self, model: Any, name: str, registered_model_name: str | None) -> None:
        from modelpack.errors import InvalidArgument

        method = next((m for m in ("predict", "transform") if hasattr(model, m)), None)
        if method is None:
            raise InvalidArgument(
                f"{type(model).__name__} has neither predict() nor transform(), so a package "
                f"of it could not answer requests; it was not logged."
            )
        options: dict[str, Any] = {"flavor": FLAVOR, "serialization": self.options.serialization}
        if method != "predict":
            options["predict_method"] = method
        example = self.example
        if self.options.log_input_examples and example is not None:
            options["input_example"] = example
            options["infer_signature"] = self.options.log_model_signatures
        elif self.options.log_model_signatures and example is not None:
            from modelpack.inference import infer_signature

            output = getattr(model, method)(copy.deepcopy(example))
            options["signature"] = infer_signature(example, output)
        else:
            options["infer_signature"] = False
        assert self.run is not None
        self.run.client.log_model(
            self.run.info.run_id,
            model,
            name,
            registered_model_name=registered_model_name,
            **options,
        )

    def log_file(self, name: str, text: str) -> None:
        assert self.run is not None
        with tempfile.TemporaryDirectory(prefix="modelpack-autolog-") as tmp:
            path = Path(tmp) / name
            path.write_text(text, encoding="utf-8")
            self.run.client.log_artifact(self.run.info.run_id, path)

    def child_runs(self, search: Any) -> None:
        """One nested run per candidate, best first: the seed estimator's params with the
        candidate's, and its aggregate cv_results_ columns as metrics (as MLflow does)."""
        import numpy as np

        results = search.cv_results_
        rank = "rank_test_score"
        if rank not in results:
            rank = next(k for k in results if k.startswith("rank_test_"))
        order = np.argsort(np.asarray(results[rank]), kind="stable")
        if self.options.max_tuning_runs is not None:
            order = order[: self.options.max_tuning_runs]
        seed = search.estimator
        base = seed.get_params(deep=not is_search(seed))
        columns = [k for k in results if not k.startswith(NOT_METRICS)]
        tags = {AUTOLOG_TAG: FLAVOR, **estimator_tags(seed)}
        for i in order:
            values = {k: results[k][i] for k in columns}
            metrics = [
                (k, float(v), None, 0)
                for k, v in values.items()
                if isinstance(v, numbers.Real) and not isinstance(v, bool)
            ]
            with tracking.start_run(nested=True, tags=tags) as child:
                child.client.log_batch(
                    child.info.run_id,
                    metrics=metrics,
                    params=param_values({**base, **results["params"][i]}),
                )
                if self.dataset is not None:
                    tracking.log_input(self.dataset, context="train")

    def report(self, error: BaseException | None) -> None:
        if not self.failures or self.options.silent:
            return
        name = f"{type(self.estimator).__name__}.{self.method}"
        message = (
            f"modelpack autologging could not log everything for {name}(); the fit itself "
            f"{'raised, see its exception' if error else 'succeeded'}. Failed: "
            + "; ".join(self.failures)
        )
        if error is None:
            # report <- finish <- fit <- _fit <- the patched method <- the user's call
            warnings.warn(message, UserWarning, stacklevel=6)
            return
        # The fit's own exception is what the caller must see: a warning turned into an
        # error (-W error) must not replace it.
        with contextlib.suppress(Warning):
            warnings.warn(message, UserWarning, stacklevel=6)
