"""The OpenAPI document is a contract: readable operation ids, tags, documented errors."""

import re

from locattr.api import create_app
from locattr.api.settings import Settings


def test_every_operation_is_named_tagged_and_documents_its_errors() -> None:
    document = create_app(Settings(db="unused.db")).openapi()
    operations = [op for path in document["paths"].values() for op in path.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids)) >= 9
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)*", i) for i in ids), ids
    for op in operations:
        assert op["tags"] and op.get("description"), op["operationId"]
        assert {"200", "404", "422", "503"} <= set(op["responses"]), op["operationId"]
        error_schema = op["responses"]["422"]["content"]["application/json"]["schema"]
        assert error_schema == {"$ref": "#/components/schemas/ErrorBody"}


def test_document_is_deterministic() -> None:
    first = create_app(Settings(db="unused.db")).openapi()
    second = create_app(Settings(db="unused.db")).openapi()
    assert first == second
