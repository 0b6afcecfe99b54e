"""The database schema: the one place that knows the tables (SQLite and PostgreSQL alike).

Change it only together with a new alembic revision (`alembic revision --autogenerate`), and
bump `SCHEMA_REVISION` to that revision's id.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_REVISION = "0006_compact_index"
"""The alembic revision these models correspond to (checked against alembic's head in tests)."""


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Provenance and settings: key -> JSON text (run, thresholds, versions, seed, ...)."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Layer(Base):
    """A decomposed layer. Its components have ids ``first_component_id + index``."""

    __tablename__ = "layers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(300), unique=True)
    n_components: Mapped[int] = mapped_column(Integer)
    first_component_id: Mapped[int] = mapped_column(Integer)


class Component(Base):
    """One rank-1 component, with running statistics over the prompts it fires in."""

    __tablename__ = "components"
    __table_args__ = (UniqueConstraint("layer_id", "index", name="uq_components_layer_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    layer_id: Mapped[int] = mapped_column(ForeignKey("layers.id"))
    index: Mapped[int] = mapped_column(Integer)
    prompt_count: Mapped[int] = mapped_column(Integer, default=0)
    sum_max_ci: Mapped[float] = mapped_column(Float, default=0.0)
    max_max_ci: Mapped[float] = mapped_column(Float, default=0.0)
    mean_ci: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Dataset mean CI, from the activation contexts (None until they are stored)."""


class ActivationContextDictionary(Base):
    """A zstd dictionary that activation contexts stored together are compressed with."""

    __tablename__ = "activation_context_dictionaries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ActivationContext(Base):
    """A component's activation contexts (top firing windows, token statistics): their JSON,
    zstd-compressed with dictionary ``dictionary_id``, or alone where that is None (see
    `locattr.storage.context_blobs`)."""

    __tablename__ = "activation_contexts"

    component_id: Mapped[int] = mapped_column(ForeignKey("components.id"), primary_key=True)
    dictionary_id: Mapped[int | None] = mapped_column(
        ForeignKey("activation_context_dictionaries.id"), nullable=True
    )
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Prompt(Base):
    """One prompt and its graph. ``identity`` makes re-adding a prompt a no-op."""

    __tablename__ = "prompts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    identity: Mapped[str] = mapped_column(String(500), unique=True)
    source: Mapped[str] = mapped_column(Text)
    """JSON: where the prompt came from (dataset, split, index; or file and line)."""
    n_tokens: Mapped[int] = mapped_column(Integer)
    token_ids: Mapped[str] = mapped_column(Text)
    tokens: Mapped[str] = mapped_column(Text)
    n_nodes: Mapped[int] = mapped_column(Integer)
    n_edges: Mapped[int] = mapped_column(BigInteger)
    n_components: Mapped[int] = mapped_column(Integer)
    """Number of index rows written with this prompt (checked by consistency tests)."""
    graph: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    """`locattr.storage.codec` blob; None when the database was built index-only."""


class ComponentActivation(Base):
    """The inverted index: component -> prompts where it fires (CI >= the build threshold).

    The primary key leads with the component, so one component's prompts are one contiguous
    range (a clustered WITHOUT ROWID table on SQLite); a prompt's components are its
    `PromptPosting`, so no second index is kept. ``positions`` holds the token positions where
    it fires as little-endian uint16; ``max_ci`` its largest CI there and ``ci_sum`` its CI
    summed over those positions (its CI mass in the prompt, what search ranks by), both as
    integers in `index_rows.CI_UNIT` (1e-6): 3 or 4 bytes a value on SQLite, where a REAL
    takes 8.
    """

    __tablename__ = "component_activations"
    __table_args__ = {"sqlite_with_rowid": False}

    component_id: Mapped[int] = mapped_column(ForeignKey("components.id"), primary_key=True)
    prompt_id: Mapped[int] = mapped_column(
        ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True
    )
    max_ci: Mapped[int] = mapped_column(BigInteger)
    positions: Mapped[bytes] = mapped_column(LargeBinary)
    ci_sum: Mapped[int] = mapped_column(BigInteger)


class ComponentPosting(Base):
    """The inverted index packed per component, for fast search (see `storage.postings`).

    Covers the index rows with ``prompt_id <= through_prompt_id``: the prompt ids (ascending,
    little-endian int32) and the matching max CIs and CI sums (in `index_rows.CI_UNIT` as the
    index holds them, `index_rows.pack_ci_units`' int32 or int64). Rows added after the last
    build are read from `component_activations`, so the packed copy is never wrong, only less
    complete.
    """

    __tablename__ = "component_postings"

    component_id: Mapped[int] = mapped_column(ForeignKey("components.id"), primary_key=True)
    through_prompt_id: Mapped[int] = mapped_column(Integer)
    prompt_ids: Mapped[bytes] = mapped_column(LargeBinary)
    max_ci: Mapped[bytes] = mapped_column(LargeBinary)
    ci_sum: Mapped[bytes] = mapped_column(LargeBinary)


class PromptPosting(Base):
    """The components firing in a prompt (`storage.component_lists`' packing): the index read
    by prompt, for co-firing counts and for copying a prompt's index rows.

    Written with the prompt and its index rows, in the same transaction: every prompt with
    index rows has one (a prompt never changes once stored).
    """

    __tablename__ = "prompt_postings"

    prompt_id: Mapped[int] = mapped_column(
        ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True
    )
    component_ids: Mapped[bytes] = mapped_column(LargeBinary)


class CofiringCount(Base):
    """For a component firing in many prompts: in how many of them each component fires too
    (zstd-compressed little-endian int32 by component id), over the prompts with ids up to
    ``through_prompt_id``. Counting that at request time means reading the component lists of
    thousands of prompts; later prompts are still counted then (see `storage.postings`)."""

    __tablename__ = "cofiring_counts"

    component_id: Mapped[int] = mapped_column(ForeignKey("components.id"), primary_key=True)
    through_prompt_id: Mapped[int] = mapped_column(Integer)
    counts: Mapped[bytes] = mapped_column(LargeBinary)


class CorpusAttribution(Base):
    """One (source, target) component pair summed over every stored graph: the sum of its edge
    values and of their absolute values, as integers in `edge_rows.ATTRIBUTION_UNIT` (exact in
    any order), and the number of prompts where it has an edge. Written with each prompt."""

    __tablename__ = "corpus_attributions"
    __table_args__ = (
        Index("ix_corpus_attributions_target", "target_id"),
        {"sqlite_with_rowid": False},
    )

    source_id: Mapped[int] = mapped_column(ForeignKey("components.id"), primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("components.id"), primary_key=True)
    total: Mapped[int] = mapped_column(BigInteger)
    total_abs: Mapped[int] = mapped_column(BigInteger)
    prompt_count: Mapped[int] = mapped_column(Integer)


class CorpusDelta(Base):
    """What one write batch adds to `corpus_attributions` and `edge_postings`, until folded in
    (see `storage.corpus_deltas`): its pair sums and its edge index entries, zstd-compressed
    column arrays."""

    __tablename__ = "corpus_deltas"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pair_sums: Mapped[bytes] = mapped_column(LargeBinary)
    strong_edges: Mapped[bytes] = mapped_column(LargeBinary)


class EdgePosting(Base):
    """The edge index packed per component pair (see `storage.edge_postings`): prompt ids
    (little-endian int32, ascending), signed values (float32) and (source, target) positions
    (uint16 pairs) of the prompts where its strongest edge reaches the floor (meta
    `edge_index_min_abs`). A rowid table: postings of
    kilobytes stay on their page there, where a WITHOUT ROWID row spills to overflow pages."""

    __tablename__ = "edge_postings"

    source_id: Mapped[int] = mapped_column(ForeignKey("components.id"), primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("components.id"), primary_key=True)
    prompt_ids: Mapped[bytes] = mapped_column(LargeBinary)
    edge_values: Mapped[bytes] = mapped_column(LargeBinary)
    positions: Mapped[bytes] = mapped_column(LargeBinary)


meta_table = Base.metadata.tables["meta"]
layers_table = Base.metadata.tables["layers"]
components_table = Base.metadata.tables["components"]
activation_contexts_table = Base.metadata.tables["activation_contexts"]
context_dictionaries_table = Base.metadata.tables["activation_context_dictionaries"]
prompts_table = Base.metadata.tables["prompts"]
component_activations_table = Base.metadata.tables["component_activations"]
component_postings_table = Base.metadata.tables["component_postings"]
prompt_postings_table = Base.metadata.tables["prompt_postings"]
corpus_attributions_table = Base.metadata.tables["corpus_attributions"]
corpus_deltas_table = Base.metadata.tables["corpus_deltas"]
edge_postings_table = Base.metadata.tables["edge_postings"]
cofiring_counts_table = Base.metadata.tables["cofiring_counts"]
