#!/usr/bin/env python3
"""Min / median / max of each tern-bench row over several JSON runs.

Usage: scripts/bench-summary.py RUN.json... (prints a Markdown table)."""
import json
import statistics
import sys
from collections import OrderedDict


def main(paths):
    rows = OrderedDict()
    for path in paths:
        with open(path) as f:
            run = json.load(f)
        for failure in run.get("failures", []):
            print(f"{path}: failure: {failure}", file=sys.stderr)
        for r in run["results"]:
            key = (r["case"], r["size"])
            row = rows.setdefault(key, {"MB/s": [], "msgs/s": [], "vs O_DIRECT": [],
                                        "p50": [], "p99": [], "unit": None, "skew": [],
                                        "p99/live": []})
            row["MB/s"].append(r["mb_per_s"])
            row["msgs/s"].append(r["msgs_per_s"])
            if r.get("vs_disk_direct") is not None:
                row["vs O_DIRECT"].append(r["vs_disk_direct"] * 100)
            lat = r.get("latency")
            if lat:
                row["unit"] = lat["unit"]
                row["p50"].append(lat["p50"])
                row["p99"].append(lat["p99"])
                if lat.get("start_skew") is not None:
                    row["skew"].append(lat["start_skew"])
                if lat.get("p99_vs_live") is not None:
                    row["p99/live"].append(lat["p99_vs_live"])

    def fmt(values, digits=1):
        if not values:
            return "-"
        return "{:.{d}f} / {:.{d}f} / {:.{d}f}".format(
            min(values), statistics.median(values), max(values), d=digits)

    print(f"runs: {len(paths)}; each cell min / median / max\n")
    print("| case | size | MB/s | msgs/s | vs O_DIRECT % | p50 | p99 | start skew | p99 / live |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (case, size), row in rows.items():
        unit = f" {row['unit']}" if row["unit"] else ""
        print(f"| {case} | {size} | {fmt(row['MB/s'])} | {fmt(row['msgs/s'], 0)} | "
              f"{fmt(row['vs O_DIRECT'])} | {fmt(row['p50'], 1)}{unit if row['p50'] else ''} | "
              f"{fmt(row['p99'], 1)}{unit if row['p99'] else ''} | {fmt(row['skew'], 1)} | "
              f"{fmt(row['p99/live'], 2)} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
