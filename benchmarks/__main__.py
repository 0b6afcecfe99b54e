"""Run every benchmark (`make bench`): each `bench_*.py` module's `main`, in name order.

python -m benchmarks [--quick] [name ...]     e.g. python -m benchmarks storage

Benchmarks in `OPT_IN` run only when named (`python -m benchmarks scale`): `scale` builds
corpora of up to 80,000 prompts the first time (several minutes, ~7 GB of cache).
"""

import importlib
import pkgutil
import sys
from pathlib import Path

OPT_IN = frozenset({"scale"})


def main() -> None:
    flags = [arg for arg in sys.argv[1:] if arg.startswith("-")]
    wanted = {arg.removeprefix("bench_") for arg in sys.argv[1:] if not arg.startswith("-")}
    names = sorted(
        info.name
        for info in pkgutil.iter_modules([str(Path(__file__).parent)])
        if info.name.startswith("bench_")
    )
    for name in names:
        short = name.removeprefix("bench_")
        if (wanted and short not in wanted) or (not wanted and short in OPT_IN):
            continue
        print(f"\n===== {name} =====", flush=True)
        importlib.import_module(f"benchmarks.{name}").main(flags)


if __name__ == "__main__":
    main()
