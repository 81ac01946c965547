"""An experiment's results: DIR/results.csv, DIR/results.png and DIR/best/.

    results.csv   one row per trial: its drawn values, status (finished, stopped: by the
                  scheduler, error), the metric it last reported, its progress (supernet
                  epochs + search generations reported), the pick's params and nonzero params
                  and test accuracy (finished trials), the error (failed trials), its run dir;
                  with split.as_trials also its sub-supernet and the trunk trial it came from
    results.png   the metric against size (params; the last reported arch's for stopped
                  trials), coloured by the first tuned field
    best/         the best finished trial's export (best/ of its run), loadable like any other
"""
from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

from launch.files import write_bytes_atomic, write_directory_atomic, write_text_atomic
from launch.tune.trial import LEAF

FINISHED, STOPPED, ERROR = "finished", "stopped", "error"
SPLIT = "split"  # a trunk trial that reached its last split (its sub-supernets are trials)


def rows(results, params: list[str], metric: str, staged: bool = False) -> list[dict]:
    """One dict per trial of a Ray `ResultGrid` (or any iterable of its `Result`s); `staged`:
    a stage of a split.as_trials experiment (rows name their sub-supernet and trunk)."""
    out = []
    for result in results:
        reported = result.metrics or {}
        trial_dir = Path(result.path)
        status = ERROR if result.error is not None else \
            FINISHED if reported.get("phase") == "done" else \
            SPLIT if reported.get("phase") == "split" else STOPPED
        config = result.config or {}
        leaf = config.get(LEAF)
        row = {"trial": trial_dir.name, "status": status}
        row.update({path: (leaf["values"] if leaf else config).get(path) for path in params})
        if staged:
            row.update({LEAF: leaf["index"] if leaf else None,
                        "trunk": Path(leaf["trunk"]).parent.name if leaf else trial_dir.name})
        row.update({metric: reported.get(metric), "progress": reported.get("progress"),
                    "size": reported.get("size"), "params": reported.get("params"),
                    "nonzero_params": reported.get("nonzero_params"),
                    "test_accuracy": reported.get("test_accuracy"),
                    "error": _error_line(result.error) if result.error is not None else None,
                    "run_dir": str(trial_dir / "run")})
        out.append(row)
    return sorted(out, key=lambda r: r["trial"])


def _error_line(error: BaseException) -> str:
    """What went wrong, in one line: the trial's own exception, not Ray's wrapper of it."""
    cause = getattr(error, "cause", None) or error
    text = " ".join(str(cause).split())
    if cause is error and "Traceback" in text:  # a wrapper that kept only the formatted traceback
        text = text.rsplit("Error: ", 1)[-1]
    return f"{type(cause).__name__}: {text}"


def best(table: list[dict], metric: str) -> dict | None:
    finished = [r for r in table if r["status"] == FINISHED and r[metric] is not None]
    return max(finished, key=lambda r: r[metric]) if finished else None


def write_csv(path: Path, table: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(table[0]) if table else ["trial"])
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in table)
    write_text_atomic(path, buffer.getvalue())


def plot(path: Path, table: list[dict], metric: str, colour_by: str | None) -> None:
    """The metric against size of every trial that reported, coloured by `colour_by`."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    shown = [r for r in table if r[metric] is not None and r["size"]]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    values = [r[colour_by] for r in shown] if colour_by else []
    numeric = bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    markers = {FINISHED: "o", STOPPED: "x"}
    if numeric:
        low, high = min(values), max(values)
        norm = matplotlib.colors.Normalize(low, high if high > low else low + 1)
        for status, marker in markers.items():
            group = [r for r in shown if r["status"] == status]
            if group:
                ax.scatter([r["size"] for r in group], [r[metric] for r in group], marker=marker,
                           c=[r[colour_by] for r in group], cmap="viridis", norm=norm, label=status)
        fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label=colour_by)
    else:
        labels = sorted({str(v) for v in values}) or [None]
        palette = plt.get_cmap("tab10")
        for i, label in enumerate(labels):
            for status, marker in markers.items():
                group = [r for r in shown if r["status"] == status
                         and (label is None or str(r[colour_by]) == label)]
                if group:
                    ax.scatter([r["size"] for r in group], [r[metric] for r in group], marker=marker,
                               color=palette(i % 10),
                               label=f"{colour_by}={label} ({status})" if label is not None else status)
    if shown:
        ax.legend(fontsize=8)
        if max(r["size"] for r in shown) > 10 * min(r["size"] for r in shown):
            ax.set_xscale("log")
    ax.set_xlabel("size (parameters; nonzero in sparse searches)")
    ax.set_ylabel(metric)
    ax.set_title(f"{len(shown)} trials: {metric} against size (o finished, x stopped early)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def copy_best(directory: Path, trial: dict) -> None:
    """DIR/best: a copy of the trial's export (replacing an older one whole)."""
    source = Path(trial["run_dir"]) / "best"
    target = directory / "best"
    fresh = directory / ".best.new"
    shutil.rmtree(fresh, ignore_errors=True)
    write_directory_atomic(fresh, lambda tmp: shutil.copytree(
        source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.tmp")))
    if target.exists():
        old = directory / ".best.old"
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        fresh.rename(target)
        shutil.rmtree(old)
    else:
        fresh.rename(target)


def summary(table: list[dict], metric: str) -> str:
    counts = {s: sum(r["status"] == s for r in table) for s in (FINISHED, STOPPED, ERROR)}
    text = (f"{len(table)} trials: {counts[FINISHED]} finished, {counts[STOPPED]} stopped early, "
            f"{counts[ERROR]} failed")
    top = best(table, metric)
    if top is not None:
        text += f"; best {top['trial']} ({metric} {top[metric]:.4f}, {top['params']:,} params)"
    return text
