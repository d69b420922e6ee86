"""Built-in flavors: one module per framework, each with the same five verbs.

See ``modelpack.flavor.Flavor`` for the contract. Installed as ``modelpack.flavors``.
"""

if __name__ != "modelpack.flavors":
    raise ImportError(
        f"This package must be imported as 'modelpack.flavors', not {__name__!r}; "
        "install modelpack (pip install -e .) instead of putting the repository on sys.path."
    )
