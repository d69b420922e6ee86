"""The REST server: MLflow's /invocations and the Open Inference Protocol v2 for any package.

Installed as ``modelpack.serving``.
"""

if __name__ != "modelpack.serving":
    raise ImportError(
        f"This package must be imported as 'modelpack.serving', not {__name__!r}; "
        "install modelpack (pip install -e .) instead of putting the repository on sys.path."
    )

from modelpack.serving.app import create_app  # noqa: E402
from modelpack.serving.server import serve  # noqa: E402

__all__ = ["create_app", "serve"]
