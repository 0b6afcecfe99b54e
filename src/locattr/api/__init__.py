"""The HTTP API: ``uvicorn locattr.api:app`` serves the database named by LOCATTR_DB."""

from locattr.api.app import create_app

app = create_app()

__all__ = ["app", "create_app"]
