"""Health, provenance and the layer table."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import Connection

from locattr import __version__
from locattr.api import schemas
from locattr.api.deps import DatabaseDep
from locattr.api.errors import ERROR_RESPONSES
from locattr.storage import reads
from locattr.storage.models import SCHEMA_REVISION

router = APIRouter(tags=["meta"], responses=ERROR_RESPONSES)


@router.get("/health", response_model=schemas.Health)
async def get_health(database: DatabaseDep) -> schemas.Health:
    """Liveness and readiness: answers only when the database answers."""
    count = await database.run(reads.prompt_count)
    return schemas.Health(status="ok", prompt_count=count)


@router.get("/meta", response_model=schemas.Meta)
async def get_meta(database: DatabaseDep) -> schemas.Meta:
    """Provenance of every graph (run, config digest, thresholds, versions) and the layers."""

    def read(sync_connection: Connection) -> schemas.Meta:
        slots = database.layers.slots(sync_connection, refresh=True)
        return schemas.Meta(
            prompt_count=reads.prompt_count(sync_connection),
            layers=[
                schemas.LayerInfo(name=name, n_components=slot.n_components)
                for name, slot in slots.items()
            ],
            meta=reads.get_meta(sync_connection),
            schema_revision=SCHEMA_REVISION,
            locattr_version=__version__,
        )

    return await database.run(read)


@router.get("/layers", response_model=list[schemas.LayerInfo])
async def list_layers(database: DatabaseDep) -> list[schemas.LayerInfo]:
    """Decomposed layers in model order with their number of components."""

    def read(sync_connection: Connection) -> list[schemas.LayerInfo]:
        slots = database.layers.slots(sync_connection, refresh=True)
        return [schemas.LayerInfo(name=n, n_components=s.n_components) for n, s in slots.items()]

    return await database.run(read)
