"""Time to generate the synthetic Bookstore (CSV files and manifest included).

    python benchmarks/bench_generate.py            # 1M orders, 200k customers, 50k books
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recommender.datagen import DatasetSpec, generate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=int, default=200_000)
    p.add_argument("--books", type=int, default=50_000)
    p.add_argument("--orders", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    spec = DatasetSpec(seed=42, customers=args.customers, books=args.books, orders=args.orders)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            manifest = generate(spec, Path(tmp))
            times.append(time.perf_counter() - t0)
        size_mib = (Path(tmp) / "orders.csv").stat().st_size / 2**20
    print(json.dumps({"orders": args.orders, "seconds": sorted(times), "orders_csv_mib": round(size_mib, 1),
                      "sha256": manifest["sha256"]}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
