"""Draw docs/assets/peers.png: one panel per workload, "x times faster than perdure" per peer.

Run as a script by whichever interpreter has matplotlib (the runner picks one):
``python _chart.py DATA.json OUT.png``, DATA = {"title": str, "panels": [{"title": str,
"perdure": str, "bars": [[system, ratio or null], ...]}]} where ratio = the peer's
median / perdure (fsync)'s median (above 1: perdure is faster). Linear bars, the value
written on each, a line at 1, missing measurements marked "not measured".
"""

from __future__ import annotations

import json
import math
import sys


def draw(data: dict[str, object], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[dict[str, object]] = data["panels"]  # type: ignore[assignment]
    cols = 3
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(15, 3.2 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        bars: list[list[object]] = panel["bars"]  # type: ignore[assignment]
        names = [str(b[0]).replace(" (durability=", "\n(durability=") for b in bars]
        values = [float(b[1]) if b[1] is not None else 0.0 for b in bars]  # type: ignore[arg-type]
        colors = ["#2a7" if v >= 1 else "#c44" for v in values]
        ax.barh(range(len(bars)), values, color=colors)
        top = max([*values, 1.0])
        for i, (bar, v) in enumerate(zip(bars, values, strict=True)):
            text = "not measured" if bar[1] is None else f"{v:.2f}x"
            ax.text(v + top * 0.01, i, text, va="center", fontsize=8)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xlim(0, top * 1.25)
        ax.set_yticks(range(len(bars)))
        ax.set_yticklabels(names, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{panel['title']}\n({panel['perdure']})", fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(str(data.get("title", "perdure vs peers")), fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        draw(json.load(fh), sys.argv[2])
