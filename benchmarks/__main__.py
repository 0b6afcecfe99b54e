"""Run every benchmark (`make bench`): each `bench_*.py` module's `main`, in name order.

python -m benchmarks [--quick] [name ...]     e.g. python -m benchmarks storage
"""

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> None:
    flags = [arg for arg in sys.argv[1:] if arg.startswith("-")]
    wanted = {arg.removeprefix("bench_") for arg in sys.argv[1:] if not arg.startswith("-")}
    names = sorted(
        info.name
        for info in pkgutil.iter_modules([str(Path(__file__).parent)])
        if info.name.startswith("bench_")
    )
    for name in names:
        if wanted and name.removeprefix("bench_") not in wanted:
            continue
        print(f"\n===== {name} =====", flush=True)
        importlib.import_module(f"benchmarks.{name}").main(flags)


if __name__ == "__main__":
    main()
