"""locattr: local attribution graphs of SPD-decomposed language models."""

from locattr.graph import Graph

__version__ = "0.1.0"

__all__ = ["Graph", "LocalAttrDB", "__version__"]


def __getattr__(name: str) -> object:
    # LocalAttrDB pulls in SQLAlchemy; import it lazily so `locattr.compute` stays light.
    if name == "LocalAttrDB":
        from locattr.storage import LocalAttrDB

        return LocalAttrDB
    raise AttributeError(name)
