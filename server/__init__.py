"""The team's tracking and registry server (``modelpack server``): MLflow's REST API over the
modelpack store, the artifact proxy, authentication, and the API that MLflow lacks.

Installed as ``modelpack.server``.
"""

if __name__ != "modelpack.server":
    raise ImportError(
        f"This package must be imported as 'modelpack.server', not {__name__!r}; "
        "install modelpack (pip install -e .) instead of putting the repository on sys.path."
    )

from modelpack.server.app import create_app  # noqa: E402
from modelpack.server.config import ServerOptions  # noqa: E402

__all__ = ["ServerOptions", "create_app"]
