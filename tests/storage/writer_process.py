"""A separate writer process for the concurrency tests: adds random prompts to a database.

    python -m tests.storage.writer_process DB SEED N_PROMPTS BATCH [N_EDGES]

N_PROMPTS < 0 writes until killed. Prints "ready" once the layers are registered.
"""

import sys

import numpy as np

from locattr import LocalAttrDB
from tests.graphs import LAYERS, random_record


def main() -> None:
    url, seed, n_prompts, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    n_edges = int(sys.argv[5]) if len(sys.argv) > 5 else 40
    rng = np.random.default_rng(seed)
    with LocalAttrDB(url) as db:
        db.register_layers(LAYERS)
        print("ready", flush=True)
        written = 0
        while n_prompts < 0 or written < n_prompts:
            size = batch if n_prompts < 0 else min(batch, n_prompts - written)
            records = [random_record(rng, n_nodes=30, n_edges=n_edges) for _ in range(size)]
            db.add_prompts(records)
            written += size


if __name__ == "__main__":
    main()
