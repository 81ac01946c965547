"""PNG plots of a run: the search trajectory and the accuracy–params Pareto front.
Written atomically (render to a temporary file, then rename)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from search import pareto as pareto_math


def subplots(rows: int = 1, cols: int = 1, **kw):
    """(figure, axes) like `pyplot.subplots`, but a plain `Figure`: no pyplot state and no
    backend switched, so importing jaxnas leaves a notebook's plotting as it was."""
    fig = Figure(figsize=kw.pop("figsize", None))
    return fig, fig.subplots(rows, cols, **kw)


def save(fig, path: Path) -> None:
    """`fig` as a PNG at `path`, written atomically."""
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)


def trajectory(path: Path, supernet: list[dict], search: list[dict], title: str = "",
               score: str = "val accuracy (inherited weights)") -> None:
    """`trajectory_figure` written to `path`."""
    save(trajectory_figure(supernet, search, title, score), path)


def trajectory_figure(supernet: list[dict], search: list[dict], title: str = "",
                      score: str = "val accuracy (inherited weights)"):
    """Left: supernet training loss per epoch (and α entropy for gradient methods).
    Right: best validation accuracy found against the number of archs evaluated."""
    fig, (left, right) = subplots(1, 2, figsize=(11, 4))
    if supernet:
        epochs = [r["step"] for r in supernet]
        left.plot(epochs, [r["loss"] for r in supernet], label="weight loss")
        if "alpha_loss" in supernet[0]:
            left.plot(epochs, [r["alpha_loss"] for r in supernet], label="α loss (val)")
            twin = left.twinx()
            twin.plot(epochs, [r["alpha_entropy"] for r in supernet], "g--", label="α entropy")
            twin.set_ylabel("mean entropy of softmax(α) [nats]")
            twin.legend(loc="upper center")
        left.legend(loc="upper right")
    left.set(xlabel="supernet epoch", ylabel="loss",
             title="supernet training" if supernet else "no supernet trained")
    for axis in (left.xaxis, right.xaxis):  # epochs and evaluations are counts
        axis.set_major_locator(MaxNLocator(integer=True))
    if search:
        right.plot([r["evaluations"] for r in search], [r["best_accuracy"] for r in search],
                   "o-", ms=3, label="best so far")
        if "generation_mean" in search[0]:
            right.plot([r["evaluations"] for r in search], [r["generation_mean"] for r in search],
                       ".", alpha=0.6, label="generation mean")
        right.legend(loc="lower right")
    right.set(xlabel="archs evaluated", ylabel=score,
              title="search")
    if title:
        fig.suptitle(title)
    return fig


def pareto(path: Path, points: list[tuple[float, float]], chosen: tuple[float, float] | None = None,
           budget: float | None = None, xlabel: str = "parameters",
           score: str = "val accuracy (inherited weights)") -> None:
    """`pareto_figure` written to `path`."""
    save(pareto_figure(points, chosen, budget, xlabel, score), path)


def pareto_figure(points: list[tuple[float, float]], chosen: tuple[float, float] | None = None,
                  budget: float | None = None, xlabel: str = "parameters",
                  score: str = "val accuracy (inherited weights)"):
    """Every evaluated arch as (size, accuracy); the non-dominated front (smaller,
    more accurate) as a line; the chosen arch starred. `xlabel` names the size."""
    fig, ax = subplots(figsize=(6.5, 4.5))
    if points:
        xy = np.asarray(points, np.float64)
        ax.scatter(xy[:, 0], xy[:, 1], s=8, alpha=0.35, label="evaluated")
        front = pareto_math.non_dominated_sort(np.stack([-xy[:, 0], xy[:, 1]], 1))[0]
        order = sorted(front, key=lambda i: xy[i, 0])
        ax.step(xy[order, 0], xy[order, 1], "r-", where="post", label="Pareto front")
    if chosen is not None:
        ax.scatter([chosen[0]], [chosen[1]], marker="*", s=220, c="gold", edgecolors="k",
                   zorder=5, label="chosen")
    if budget is not None:
        ax.axvline(budget, color="gray", ls=":", label="budget")
    ax.set(xscale="log", xlabel=xlabel, ylabel=score, title=f"{score} vs {xlabel}")
    ax.legend(loc="lower right")
    return fig


def split_matrices(path: Path, splits: list[dict]) -> None:
    """One heat map per split: the mean gradient distance between the options of the
    decision it split (the groups it made in the title), and the cut of every
    candidate decision beside it."""
    fig, axes = subplots(2, len(splits), figsize=(3.6 * len(splits), 6.4), squeeze=False)
    for column, split in enumerate(splits):
        chosen = next(c for c in split["candidates"] if c["decision"] == split["decision"])
        top, bottom = axes[0, column], axes[1, column]
        image = top.imshow(np.asarray(chosen["matrix"]), cmap="viridis")
        labels = [str(o) for o in chosen["options"]]
        top.set_xticks(range(len(labels)), labels)
        top.set_yticks(range(len(labels)), labels)
        where = ", ".join(f"{k}∈{v}" for k, v in split["parent"].items()) or "whole space"
        top.set_title(f"epoch {split['epoch']} · {where}\n{split['decision']}: {split['groups'][0]} | "
                      f"{split['groups'][1]}", fontsize=8)
        fig.colorbar(image, ax=top, fraction=0.046)
        names = [c["decision"] for c in split["candidates"]]
        bottom.barh(names, [c["cut"] for c in split["candidates"]],
                    color=["tab:red" if n == split["decision"] else "tab:gray" for n in names])
        bottom.invert_yaxis()
        bottom.set_xlabel("cut (gradient distance across groups)", fontsize=8)
        bottom.tick_params(labelsize=7)
    save(fig, path)
