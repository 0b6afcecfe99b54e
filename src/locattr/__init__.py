"""locattr: local attribution graphs of SPD-decomposed language models."""

from typing import TYPE_CHECKING, Any

from locattr.graph import Edge, Graph, Node

if TYPE_CHECKING:
    from locattr.storage import LocalAttrDB

__version__ = "0.1.0"

__all__ = ["Edge", "Graph", "LocalAttrDB", "Node", "__version__"]


def __getattr__(name: str) -> Any:
    # LocalAttrDB pulls in SQLAlchemy; import it lazily so `locattr.compute` stays light.
    if name == "LocalAttrDB":
        from locattr.storage import LocalAttrDB

        return LocalAttrDB
    raise AttributeError(name)
