"""Artifacts made from Python objects (MLflow's names): ``log_text``, ``log_dict``,
``log_figure``, ``log_image``, ``log_table``.

Each writes one file in a temporary folder and logs it as ``artifact_file`` (a path relative
to the run's artifacts, e.g. ``"plots/loss.png"``). The ``Client`` methods of the same names
take a ``run_id`` first; the fluent functions log to the active run.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpack.errors import InvalidArgument, MissingDependency

if TYPE_CHECKING:
    from modelpack.client import Client

__all__ = [
    "log_dict",
    "log_figure",
    "log_image",
    "log_table",
    "log_text",
    "write_dict",
    "write_figure",
    "write_image",
    "write_table",
    "write_text",
]

_FIGURE_FORMATS = (".png", ".jpg", ".jpeg", ".svg", ".pdf", ".webp")
_IMAGE_KEY = re.compile(r"^[a-zA-Z0-9_\-./ ]+$")
LOGGED_ARTIFACTS_TAG = "modelpack.loggedArtifacts"


def _split(artifact_file: Any) -> tuple[str | None, str]:
    """``artifact_file`` as (folder or None, file name), checked."""
    from modelpack.paths import check_relative

    if not isinstance(artifact_file, str) or not artifact_file:
        raise InvalidArgument(
            f"artifact_file is a file path inside the run's artifacts (e.g. 'plots/loss.png'), "
            f"got {artifact_file!r}."
        )
    if artifact_file.endswith("/"):
        raise InvalidArgument(f"artifact_file {artifact_file!r} names a folder; add a file name.")
    check_relative(artifact_file, "artifact_file")
    norm = posixpath.normpath(artifact_file)
    folder, name = posixpath.split(norm)
    return folder or None, name


@contextlib.contextmanager
def _logged(client: Client, run_id: str, artifact_file: str) -> Iterator[Path]:
    """A temporary file path, logged as ``artifact_file`` once the block has written it."""
    folder, name = _split(artifact_file)
    client._writable(run_id)  # refused before anything is rendered
    with tempfile.TemporaryDirectory(prefix="modelpack-media-") as tmp:
        path = Path(tmp) / name
        yield path
        client.log_artifact(run_id, path, folder)


def write_text(client: Client, run_id: str, text: str, artifact_file: str) -> None:
    if not isinstance(text, str):
        raise InvalidArgument(f"log_text takes a str, got {type(text).__name__}.")
    with _logged(client, run_id, artifact_file) as path:
        path.write_text(text, encoding="utf-8")


def write_dict(client: Client, run_id: str, dictionary: Any, artifact_file: str) -> None:
    """YAML for a ``.yaml``/``.yml`` file, JSON (indented, other values as str) otherwise."""
    import yaml

    if not isinstance(dictionary, Mapping | list):
        raise InvalidArgument(
            f"log_dict takes a dict (or a list), got {type(dictionary).__name__}."
        )
    with _logged(client, run_id, artifact_file) as path:
        if path.suffix.lower() in (".yaml", ".yml"):
            try:
                text = yaml.safe_dump(_plain(dictionary), indent=2, default_flow_style=False)
            except yaml.YAMLError as exc:
                raise InvalidArgument(f"log_dict cannot write YAML: {exc}") from None
        else:
            text = json.dumps(dictionary, indent=2, default=str)
        path.write_text(text, encoding="utf-8")


def _plain(value: Any) -> Any:
    """Mappings and tuples as YAML's plain dicts and lists (a safe dump takes nothing else)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def write_figure(
    client: Client,
    run_id: str,
    figure: Any,
    artifact_file: str,
    save_kwargs: Mapping[str, Any] | None = None,
) -> None:
    """A matplotlib Figure (any format it saves, by extension) or a plotly Figure (``.html``;
    images need plotly's kaleido package)."""
    options = dict(save_kwargs or {})
    _, name = _split(artifact_file)
    suffix = posixpath.splitext(name)[1].lower()
    if "matplotlib" in sys.modules and _is_matplotlib(figure):
        with _logged(client, run_id, artifact_file) as path:
            figure.savefig(path, **options)
        return
    if "plotly" in sys.modules and _is_plotly(figure):
        if suffix == ".html":
            options.setdefault("include_plotlyjs", "cdn")
            options.setdefault("auto_open", False)
            with _logged(client, run_id, artifact_file) as path:
                figure.write_html(str(path), **options)
            return
        if suffix not in _FIGURE_FORMATS:
            raise InvalidArgument(
                f"log_figure: a plotly figure is saved as .html or an image "
                f"({', '.join(_FIGURE_FORMATS)}), not {suffix or 'a file without extension'}."
            )
        try:
            import kaleido  # noqa: F401
        except ImportError:
            raise MissingDependency(
                f"log_figure: saving a plotly figure as {suffix} needs kaleido. Install it with "
                f"pip install kaleido, or log it as .html (artifact_file="
                f"{posixpath.splitext(artifact_file)[0] + '.html'!r}).",
                flavor="plotly",
                extra="kaleido",
            ) from None
        with _logged(client, run_id, artifact_file) as path:
            figure.write_image(str(path), **options)
        return
    raise InvalidArgument(
        f"log_figure takes a matplotlib or plotly Figure, got {type(figure).__name__}."
    )


def _is_matplotlib(figure: Any) -> bool:
    import matplotlib.figure

    return isinstance(figure, matplotlib.figure.Figure)


def _is_plotly(figure: Any) -> bool:
    import plotly.graph_objects

    return isinstance(figure, plotly.graph_objects.Figure)


def _pil() -> Any:
    try:
        import PIL.Image
    except ImportError:
        raise MissingDependency(
            "log_image needs Pillow. Install it with: pip install pillow",
            flavor="pillow",
            extra="pillow",
        ) from None
    return PIL.Image


def to_pil(image: Any) -> Any:
    """A PIL image from a PIL image or a numpy array: HxW or HxWx{1,3,4}, integers in
    [0, 255] or floats (and bools) in [0, 1]."""
    import numpy as np

    pil = _pil()
    if isinstance(image, pil.Image):
        return image
    if not isinstance(image, np.ndarray):
        raise InvalidArgument(
            f"log_image takes a numpy array or a PIL Image, got {type(image).__name__}."
        )
    if image.dtype.kind not in "biuf":
        raise InvalidArgument(
            f"log_image: the array's dtype is {image.dtype}; use integers (0-255) or floats (0-1)."
        )
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise InvalidArgument(
            f"log_image: an image is HxW or HxWx1, HxWx3 (RGB), HxWx4 (RGBA); got shape "
            f"{image.shape}."
        )
    if image.size == 0:
        raise InvalidArgument(f"log_image: the array is empty (shape {image.shape}).")
    low, high = image.min(), image.max()
    if image.dtype.kind in "iu":
        if low < 0 or high > 255:
            raise InvalidArgument(
                f"log_image: integer pixels must be in [0, 255]; found {low} to {high}."
            )
        pixels = image.astype(np.uint8)
    else:
        if low < 0 or high > 1:
            raise InvalidArgument(
                f"log_image: float pixels must be in [0, 1]; found {low} to {high}. Scale them "
                f"first, e.g. image / image.max() (MLflow would have rescaled min-max with a "
                f"warning; modelpack leaves the choice to you)."
            )
        pixels = (image.astype(np.float64) * 255).round().astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    return pil.fromarray(pixels)


def write_image(
    client: Client,
    run_id: str,
    image: Any,
    artifact_file: str | None = None,
    key: str | None = None,
    step: int | None = None,
    timestamp: int | None = None,
) -> None:
    """Either ``artifact_file`` (one image) or ``key`` with ``step`` (a series of images, as
    MLflow writes them: ``images/<key>+step+<n>+timestamp+<ms>+<uuid>.png`` and a small
    ``...+compressed.webp`` beside it)."""
    if artifact_file is not None and any(v is not None for v in (key, step, timestamp)):
        raise InvalidArgument(
            "log_image takes artifact_file alone, or key= with step= and timestamp=, not both."
        )
    if artifact_file is None and key is None:
        raise InvalidArgument(
            "log_image needs artifact_file='name.png' (one image) or key='name' (a series)."
        )
    picture = to_pil(image)
    if artifact_file is not None:
        with _logged(client, run_id, artifact_file) as path:
            _save(picture, path)
        return
    if not isinstance(key, str) or not _IMAGE_KEY.match(key):
        raise InvalidArgument(
            f"log_image key {key!r}: use letters, digits, '_', '-', '.', ' ' and '/'."
        )
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        raise InvalidArgument(f"log_image step must be an integer, got {step!r}.")
    stamp = timestamp or int(time.time() * 1000)
    base = f"images/{key.replace('/', '~')}+step+{step or 0}+timestamp+{stamp}+{uuid.uuid4()}"
    with _logged(client, run_id, f"{base}.png") as path:
        _save(picture, path)
    small = picture.copy()
    small.thumbnail((256, 256))
    with _logged(client, run_id, f"{base}+compressed.webp") as path:
        _save(small.convert("RGBA") if small.mode not in ("RGB", "RGBA") else small, path)


def _save(picture: Any, path: Path) -> None:
    try:
        picture.save(path)
    except (ValueError, KeyError, OSError) as exc:
        raise InvalidArgument(
            f"log_image cannot save {path.name!r}: {exc}. Use an image extension such as .png."
        ) from None


def write_table(client: Client, run_id: str, data: Any, artifact_file: str) -> None:
    """A dict of columns or a DataFrame as MLflow's table JSON (``{"columns": [...],
    "data": [[...], ...]}``); rows logged again to the same file are appended, as in MLflow."""
    import pandas as pd

    folder, name = _split(artifact_file)
    if not name.endswith(".json"):
        raise InvalidArgument(
            f"log_table writes JSON: artifact_file must end in .json, got {artifact_file!r}."
        )
    if isinstance(data, Mapping):
        try:
            frame = pd.DataFrame(dict(data))
        except ValueError:  # all scalars: one row
            frame = pd.DataFrame([dict(data)])
    elif isinstance(data, pd.DataFrame):
        frame = data
    else:
        raise InvalidArgument(
            f"log_table takes a dict of columns or a pandas DataFrame, got {type(data).__name__}."
        )
    client._writable(run_id)
    existing = {f.path for f in client.list_artifacts(run_id, folder)}
    relative = f"{folder}/{name}" if folder else name
    if relative in existing:
        with tempfile.TemporaryDirectory(prefix="modelpack-table-") as tmp:
            old = client.download_artifacts(run_id, relative, tmp)
            previous = pd.read_json(old, orient="split")
        frame = pd.concat([previous, frame], ignore_index=True)
    try:
        text = frame.to_json(orient="split", index=False, date_format="iso")
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgument(f"log_table cannot write the table as JSON: {exc}") from None
    with _logged(client, run_id, relative) as path:
        path.write_text(text, encoding="utf-8")
    _record_table(client, run_id, relative)


def _record_table(client: Client, run_id: str, relative: str) -> None:
    tags = client.get_run(run_id).data.tags
    logged = json.loads(tags.get(LOGGED_ARTIFACTS_TAG, "[]"))
    entry = {"path": relative, "type": "table"}
    if entry not in logged:
        client.set_tag(run_id, LOGGED_ARTIFACTS_TAG, json.dumps([*logged, entry]))


# ---------------------------------------------------------------------------- fluent


def _active() -> tuple[Client, str]:
    from modelpack.tracking import require_run

    run = require_run()
    return run.client, run.info.run_id


def log_text(text: str, artifact_file: str, run_id: str | None = None) -> None:
    """Log ``text`` as the file ``artifact_file`` of the active run (or of ``run_id``)."""
    client, target = _active() if run_id is None else (_client(), run_id)
    write_text(client, target, text, artifact_file)


def log_dict(dictionary: Any, artifact_file: str, run_id: str | None = None) -> None:
    """Log ``dictionary`` as JSON, or YAML for a ``.yaml``/``.yml`` ``artifact_file``."""
    client, target = _active() if run_id is None else (_client(), run_id)
    write_dict(client, target, dictionary, artifact_file)


def log_figure(
    figure: Any, artifact_file: str, *, save_kwargs: Mapping[str, Any] | None = None
) -> None:
    """Log a matplotlib or plotly figure (``"plot.png"``, ``"plot.html"``...)."""
    client, target = _active()
    write_figure(client, target, figure, artifact_file, save_kwargs)


def log_image(
    image: Any,
    artifact_file: str | None = None,
    key: str | None = None,
    step: int | None = None,
    timestamp: int | None = None,
    synchronous: bool | None = False,
) -> None:
    """Log a numpy array or PIL image as ``artifact_file``, or as step ``step`` of ``key``."""
    from modelpack.client import check_synchronous

    check_synchronous(synchronous)
    client, target = _active()
    write_image(client, target, image, artifact_file, key, step, timestamp)


def log_table(data: Any, artifact_file: str, run_id: str | None = None) -> None:
    """Log a dict of columns or a DataFrame as a JSON table (appended to an existing one)."""
    client, target = _active() if run_id is None else (_client(), run_id)
    write_table(client, target, data, artifact_file)


def _client() -> Client:
    from modelpack.tracking import active_run

    run = active_run()
    if run is not None:
        return run.client
    from modelpack.client import Client

    return Client()
