"""The REST server (a later issue). Installed as ``modelpack.serving``."""

if __name__ != "modelpack.serving":
    raise ImportError(
        f"This package must be imported as 'modelpack.serving', not {__name__!r}; "
        "install modelpack (pip install -e .) instead of putting the repository on sys.path."
    )
