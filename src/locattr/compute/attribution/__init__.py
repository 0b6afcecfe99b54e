"""Local attribution graphs, fast: many target units per batched backward pass.

Semantics: edge = source act x d target_pre / d source act between alive nodes, kept when
|value| >= `attr_threshold`, with component activations as detached leaves; which forward the
gradients are taken in, which nodes are alive and which positions an edge may span depend on
the mode (`modes`: the original's CI-masked forward, the target model, or the SPD app's).

Narrow gradients. A target's pre-activation is `x @ V`, so seeding unit c is seeding its input x
with `V[:, c]`; a source's masked acts `m` only reach the rest of the model through
`m @ U (+ bias)`, so d target / d m[c] = (d target / d output) . U[c]. Backward passes therefore
run between d-wide tensors (the target's input, the sources' outputs), and only alive source
components are projected out, never all C.

Batching (`rows`). Rows of a batched backward each carry one seed per prompt and position. For
a target layer whose gradients never leave their position, one row seeds one alive unit at
*every* position at once (the Jacobian is position-diagonal, so position s of the gradient
belongs to the unit seeded at s): rows = the most alive units at any one position. For sources
that mix positions (k/v -> o, or the app's delta paths through attention where its diagonal
backward is not available), one row seeds one alive (position, component) unit per prompt.
Prompts of a batch share rows. Rows are chunked so each chunk's tensors stay within
`chunk_bytes`.

Sharing (`rows`, `edges`). Target layers that read the very same input tensor (an attention
block's q, k and v) share one backward, each with rows of its own. Sources whose gradients
autograd hands over as one tensor (every writer to the residual stream gets the stream's
gradient) are projected together, their alive units side by side, in one product.

Prefixes (`blocks`). Targets seeded per unit go in blocks of target positions, each over a
forward of just the prefix that holds it.

The residual stream (`stream`). The app's gradients run through every layer's delta terms, so
a backward from a deep target crosses every block below it. Targets that read the stream are
instead chained down it, block by block, with each busy block's position-diagonal Jacobian
formed once per forward.

Layout: `nodes` (alive units, node ids), `sources` (padded source units), `rows` (seeds and
slots), `blocks` (position blocks), `stream` (gradients chained down the residual stream),
`edges` (backward, projection, kept values), `host` (graphs copied to the host), `modes` (what
each mode computes), `driver` (the phases in order).
"""

from locattr.compute.attribution.driver import DEFAULT_CHUNK_BYTES, compute_graph, compute_graphs
from locattr.compute.attribution.edges import component_grads
from locattr.graph import ATTRIBUTION_MODES, AttributionMode

__all__ = [
    "ATTRIBUTION_MODES",
    "DEFAULT_CHUNK_BYTES",
    "AttributionMode",
    "component_grads",
    "compute_graph",
    "compute_graphs",
]
