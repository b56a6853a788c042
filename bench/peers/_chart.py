"""Draw docs/assets/peers.png from the runner's medians: log-scale bars per workload per system.

Run as a script by whichever interpreter has matplotlib (the runner picks one):
``python _chart.py DATA.json OUT.png``, DATA = {"workloads": [...], "systems":
[...], "medians": {workload: {system: seconds}}}.
"""

from __future__ import annotations

import json
import sys


def draw(data: dict[str, object], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads: list[str] = data["workloads"]  # type: ignore[assignment]
    systems: list[str] = data["systems"]  # type: ignore[assignment]
    medians: dict[str, dict[str, float]] = data["medians"]  # type: ignore[assignment]
    width = 0.8 / max(len(systems), 1)
    fig, ax = plt.subplots(figsize=(11, 5))
    for i, system in enumerate(systems):
        xs, ys = [], []
        for j, workload in enumerate(workloads):
            value = medians.get(workload, {}).get(system)
            if value:
                xs.append(j + (i - (len(systems) - 1) / 2) * width)
                ys.append(value)
        ax.bar(xs, ys, width, label=system)
    ax.set_yscale("log")
    ax.set_xticks(range(len(workloads)))
    ax.set_xticklabels(workloads, fontsize=8)
    ax.set_ylabel("median seconds (log scale, lower is better)")
    ax.set_title(str(data.get("title", "perdure vs peers")), fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        draw(json.load(fh), sys.argv[2])
