"""The `nas` command line.

    nas spaces                       list the search spaces with their sizes (encodings, networks)
    nas spaces show NAME             options, choices, sizes, min/max params and FLOPs
    nas config [SECTION]             every config field with its default and help
    nas train (--arch ARCH.json | --sample SEED) [--space S] [--space-options JSON] [--out DIR]
                                     train one fixed architecture from scratch
    nas search CONFIG.yaml [--out RUN_DIR] [--set key=value ...]
                                     supernet → search → retrain → test → export
    nas tune CONFIG.yaml [--num-samples N] [--out DIR] [--resume] [--address ADDR] [--set k=v ...]
                                     many searches as Ray Tune trials (the config's tune: section)
    nas resume RUN_DIR               continue a stopped or killed search exactly
                                     (search and resume take --coordinator HOST:PORT
                                     --num-processes N --process-id I on multi-host runs)
    nas export RUN_DIR --out DIR [--pick best | pareto:N] [--format orbax | stablehlo]
                                     copy a run's export (or retrain a front member) into DIR
    nas eval DIR [--data NAME] [--data-path P] [--data-options JSON]
                                     an export's accuracy on the splits it was trained with
    nas data                         list the data sets
    nas data convert SRC --out DIR   write a data set (a name, or a path: image folder, Hugging
                                     Face dataset, parquet, npz) as ArrayRecord shards
    nas data show DIR [--png P]      the shards' spec and sizes, and a grid of examples
    nas bench build SPACE --out TABLE.csv [--data D] [--archs N | --all] [--seeds S] [--epochs E]
                                     train archs from scratch into a benchmark table (resumable)
    nas bench proxies TABLE          Spearman ρ / Kendall τ of every zero-cost proxy (+ PNG)
    nas bench controllers TABLE      regret of each controller against evaluations (+ PNG)
    nas bench supernet RUN_DIR... TABLE
                                     Kendall τ of trained supernets' rankings, picks of each
    nas bench predictor TABLE        Kendall τ of a predictor fitted on a few of the table's archs

Flags are named like the config fields they set (`--space-options` is `space.options`,
`--learning-rate` is `retrain.learning_rate`, …) and default to them. Bad input — a
missing or corrupt file, bad JSON or YAML, an unknown key or name — prints one line
`nas: error: …` and exits with status 2 (NAS_DEBUG=1 shows the traceback instead, but
for mistyped arguments).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

import yaml

from launch import __version__ as _VERSION
from launch import config as configs
from launch import xla_cache
from nas import precision


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nas", description="jaxnas: search neural architectures and their "
                     "sparsity together, in JAX.")
    parser.add_argument("--version", action="version", version=f"jaxnas {_VERSION}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    sp = commands.add_parser("spaces", help="list search spaces, or show one",
                             description="List the registered search spaces with their sizes, "
                             "or show one space's options, choices and cost range.")
    sp_sub = sp.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    show = sp_sub.add_parser("show", help="options, choices, size, min/max params and FLOPs of a space",
                             description="Show a space's options (its keyword arguments: "
                             "`space.options` in a config), its choices, its size, and the smallest "
                             "and largest parameter counts and FLOPs (multiply-accumulates).")
    show.add_argument("name", help="space name (see `nas spaces`)")
    show.add_argument("--space-options", type=_mapping, default={}, metavar="JSON",
                      help='the space with these options, e.g. \'{"norm": "batch"}\'')
    show.add_argument("--input-shape", type=_shape, default=None,
                      help="input shape without batch, e.g. 32,32,3 (default: the space's)")
    show.add_argument("--num-classes", type=int, default=None, help="outputs (default: the space's)")

    co = commands.add_parser("config", help="every config field with its default and help",
                             description="Print the config fields of `nas search` as commented "
                             "YAML: each field's default and help (a valid config to start from).")
    co.add_argument("section", nargs="?", help="one section, e.g. supernet (default: all)")

    defaults = configs.Config()
    rc, dc = configs.RetrainConfig(), defaults.data
    tr = commands.add_parser("train", help="train one fixed architecture from scratch",
                             description="Train one architecture from scratch (the baseline every "
                             "search is compared with) and print its test accuracy. Flags are the "
                             "config's space.*, data.*, retrain.* and seed fields, with their "
                             "defaults (`nas config retrain`).")
    which = tr.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", type=Path, help="JSON file {choice: option}, or an export: its "
                       "arch.json or directory (run/best, or a `nas train --out` dir), whose space "
                       "and space options are used")
    which.add_argument("--sample", type=int, metavar="SEED", help="train the space's random arch "
                       "drawn with this seed")
    tr.add_argument("--space", help="space.name; optional when --arch names its space")
    tr.add_argument("--space-options", type=_mapping, metavar="JSON",
                    help='space.options, e.g. \'{"norm": "batch"}\' (over an export\'s own)')
    tr.add_argument("--data", help=f"data.name (default: {dc.name})")
    tr.add_argument("--data-path", help="data.path: the file for --data npz (x_train, y_train, "
                    "x_test, y_test)")
    tr.add_argument("--data-options", type=_mapping, metavar="JSON", help="data.options")
    tr.add_argument("--val-fraction", type=float, help="data.val_fraction: share of the training "
                    f"split held out for validation (default: {dc.val_fraction})")
    tr.add_argument("--standardize", action="store_true", default=None,
                    help="data.standardize: scale each input feature by the training split's mean "
                    "and std (stored with --out's export, which then takes raw inputs)")
    tr.add_argument("--epochs", type=int, help=f"retrain.epochs (default: {rc.epochs})")
    tr.add_argument("--batch-size", type=int, help=f"retrain.batch_size (default: {rc.batch_size})")
    tr.add_argument("--learning-rate", "--lr", type=float, help="retrain.learning_rate: AdamW "
                    f"peak, cosine decay to 0 (default: {rc.learning_rate})")
    tr.add_argument("--warmup-epochs", type=float,
                    help=f"retrain.warmup_epochs (default: {rc.warmup_epochs})")
    tr.add_argument("--weight-decay", type=float,
                    help=f"retrain.weight_decay (default: {rc.weight_decay})")
    tr.add_argument("--seed", type=int, help=f"seed: init, split and batch order (default: "
                    f"{defaults.seed})")
    tr.add_argument("--precision", choices=precision.COMPUTE_DTYPES,
                    help=f"precision.compute: the dtype the model computes in (default: "
                    f"{defaults.precision.compute}; parameters stay float32)")
    tr.add_argument("--out", type=Path, help="export directory: arch.json with the metrics and "
                    "weights/, loadable like run/best (`launch.export.load`)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    _plugin_flag(tr)

    se = commands.add_parser("search", help="search an architecture end to end",
                             description="Train a supernet, search it, retrain the chosen "
                             "architecture, test it and export it (see examples/*.yaml). An "
                             "existing run dir with the same config is resumed.")
    se.add_argument("config", type=Path, help="YAML config (see examples/ and `nas config`)")
    se.add_argument("--out", type=Path, help="run directory (default: runs/<config name>)")
    se.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one config field, e.g. --set search.max_params=5000 "
                    "(repeatable)")
    se.add_argument("--quiet", action="store_true", help="no progress bars")
    _plugin_flag(se)
    _distributed_flags(se)

    tu = commands.add_parser("tune", help="run many searches as Ray Tune trials",
                             description="Run the search of CONFIG many times as Ray Tune trials: "
                             "its tune: section varies config fields (param_space), schedules them "
                             "(asha stops trials that fall behind, or fifo) and gives each trial's "
                             "resources; without a param space the samples are seeds. Writes "
                             "DIR/results.csv, results.png and best/ (docs/tune.md).")
    tu.add_argument("config", type=Path, help="YAML config with a tune: section (see examples/tune.yaml)")
    tu.add_argument("--num-samples", type=int, metavar="N", help="draws of the param space "
                    "(default: tune.num_samples)")
    tu.add_argument("--out", type=Path, metavar="DIR", help="experiment directory, new or empty "
                    "(default: runs/<config name>_tune)")
    tu.add_argument("--resume", action="store_true", help="continue the experiment in DIR: finished "
                    "trials are kept, the others continue from their latest checkpoint")
    tu.add_argument("--address", metavar="ADDR", help="join this running Ray cluster (e.g. "
                    "HEAD_IP:6379, or auto) instead of starting Ray on this machine")
    _plugin_flag(tu)
    tu.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one search config field for every trial (repeatable)")

    re = commands.add_parser("resume", help="continue an interrupted search",
                             description="Continue the search in RUN_DIR from its newest readable "
                             "checkpoint, with the config stored there (RUN_DIR/config.yaml); it "
                             "ends exactly where an uninterrupted run ends. A finished run only "
                             "prints its report.")
    re.add_argument("run_dir", type=Path, help="the run directory of `nas search`")
    re.add_argument("--quiet", action="store_true", help="no progress bars")
    _distributed_flags(re)

    ex = commands.add_parser("export", help="write a run's model to a new export directory",
                             description="Write one model of a search run into a new directory "
                             "DIR (created whole, or not at all): the run's pick (best/: arch.json, "
                             "weights/ and a sparse run's sparse_weights.npz and compact/), or a "
                             "member of the run's front of parameters against supernet validation "
                             "accuracy, retrained. --format stablehlo adds model.stablehlo, the "
                             "inference forward that plain JAX runs (docs/export.md).")
    ex.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                    help="a search's run directory (or, with --pick best, any export directory)")
    ex.add_argument("--out", type=Path, required=True, metavar="DIR",
                    help="the export directory to create (must not exist)")
    ex.add_argument("--pick", type=_pick, default=("best", None), metavar="best|pareto:N",
                    help="best: the run's retrained pick (default); pareto:N: the N-th smallest "
                    "network (1 = smallest) of the front of evaluated archs, retrained for export")
    ex.add_argument("--format", choices=("orbax", "stablehlo"), default="orbax",
                    help="orbax: arch.json + weights/ (default); stablehlo: also model.stablehlo "
                    "and its signature model.stablehlo.json")
    ex.add_argument("--quiet", action="store_true", help="no progress bars (a pareto pick retrains)")
    _plugin_flag(ex)

    ev = commands.add_parser("eval", help="accuracy of an export on a data set",
                             description="Load an export (no supernet) and print its test "
                             "accuracy, and its validation accuracy, with the splits it was "
                             "trained with: an export inside a run directory (best/, "
                             "best/compact/, retrain/<i>/) takes the data settings and seed from "
                             "the run's config.yaml, other exports give their data set and seed "
                             "(arch.json) and the default val_fraction.")
    ev.add_argument("dir", type=Path, metavar="DIR",
                    help="an export directory, or a search's run directory (its best/)")
    ev.add_argument("--data", help="data.name (default: the data set the export was trained on)")
    ev.add_argument("--data-path", help="data.path: the file for --data npz (x_train, y_train, "
                    "x_test, y_test)")
    ev.add_argument("--data-options", type=_mapping, metavar="JSON", help="data.options")
    _plugin_flag(ev)
    _bench_parser(commands)
    return parser


def _bench_parser(commands) -> None:
    from launch.bench.build import Recipe
    recipe = Recipe()
    da = commands.add_parser("data", help="list data sets, convert one to ArrayRecord shards, show one",
                             description="List the registered data sets; convert any of them "
                             "(or a path: an image folder, a Hugging Face dataset, parquet, npz) to "
                             "ArrayRecord shards, the format for sets larger than memory; show "
                             "shards' spec, sizes and a grid of examples.")
    da_sub = da.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    cv = da_sub.add_parser("convert", help="write ArrayRecord shards and spec.json from a data set",
                           description="Write every split of a data set to a new directory of "
                           "ArrayRecord shards and spec.json (config: data.name array_record, "
                           "data.path DIR).")
    cv.add_argument("source", help="a data set name (see `nas data`) or a path (its source detected)")
    cv.add_argument("--out", type=Path, required=True, help="the new directory")
    cv.add_argument("--options", type=_mapping, default={}, metavar="JSON",
                    help='the source\'s options (data.options), e.g. \'{"size": 32}\'')
    cv.add_argument("--source", dest="source_name", default=None,
                    help="the source reading the path, when detection is not enough")
    cv.add_argument("--dtype", choices=("auto", "uint8", "float32"), default="auto",
                    help="how inputs are stored (auto: 8-bit images as uint8, else float32)")
    cv.add_argument("--shard-records", type=int, default=None, metavar="N",
                    help="records per shard (default 100,000)")
    cv.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE",
                    help="import MODULE first (a data source it registers can be named)")
    cv.add_argument("--quiet", action="store_true", help="no progress bar")
    sh = da_sub.add_parser("show", help="spec, sizes and a PNG grid of ArrayRecord shards",
                           description="Print the spec and split sizes of a directory written by "
                           "`nas data convert`, and draw its first training examples to a PNG.")
    sh.add_argument("dir", type=Path, help="the shards' directory")
    sh.add_argument("--png", type=Path, default=None,
                    help="where the grid goes (default: DIR_NAME-examples.png here)")
    sh.add_argument("--count", type=int, default=16, help="examples drawn (default 16)")

    be = commands.add_parser("bench", help="offline yardsticks: build a table of trained archs, "
                             "judge proxies, controllers and supernets against it",
                             description="Benchmark tables: architectures of a space trained from "
                             "scratch with one recipe (docs/bench.md).")
    actions = be.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    bu = actions.add_parser("build", help="train archs from scratch into TABLE.csv (resumable)",
                            description="Train archs of SPACE from scratch, spread evenly over "
                            "log(params), each with every seed, in parallel worker processes. "
                            "Re-running with the same settings skips finished rows.")
    bu.add_argument("space", help="space name (see `nas spaces`)")
    bu.add_argument("--space-options", type=_mapping, default={}, metavar="JSON",
                    help="space options, e.g. '{\"norm\": \"batch\"}'")
    bu.add_argument("--data", default="mnist1d", help="data set (default: mnist1d)")
    bu.add_argument("--data-options", type=_mapping, default={}, metavar="JSON", help="data options")
    count = bu.add_mutually_exclusive_group()
    count.add_argument("--archs", type=int, default=150, help="archs to train (default: 150)")
    count.add_argument("--all", action="store_true", help="every distinct network of the space")
    bu.add_argument("--seeds", type=int, default=2, help="training seeds per arch (default: 2)")
    bu.add_argument("--epochs", type=int, default=recipe.epochs,
                    help=f"epochs of the recipe (default: {recipe.epochs})")
    bu.add_argument("--batch-size", type=int, default=recipe.batch_size,
                    help=f"default: {recipe.batch_size}")
    bu.add_argument("--learning-rate", "--lr", type=float, default=recipe.learning_rate,
                    help=f"AdamW peak, cosine to 0 (default: {recipe.learning_rate})")
    bu.add_argument("--workers", type=int, default=None,
                    help="worker processes (default: one per core)")
    bu.add_argument("--seed", type=int, default=0, help="arch selection seed (default: 0)")
    bu.add_argument("--out", type=Path, required=True, metavar="TABLE.csv",
                    help="the table (TABLE.json is written beside it)")
    bu.add_argument("--quiet", action="store_true", help="no progress bar")

    pr = actions.add_parser("proxies", help="Spearman ρ and Kendall τ of every zero-cost proxy",
                            description="Score every arch of TABLE with every zero-cost proxy at "
                            "initialisation (per init seed), print Spearman ρ and Kendall τ against "
                            "the table's mean accuracy (mean ± sd over init seeds), and plot score "
                            "against accuracy per proxy.")
    pr.add_argument("table", type=Path, help="a table of `nas bench build` (TABLE.csv)")
    pr.add_argument("--proxies", nargs="+", default=None, metavar="NAME",
                    help="proxies to judge (default: all)")
    pr.add_argument("--seeds", type=int, default=3, help="init seeds (default: 3)")
    pr.add_argument("--examples", type=int, default=128,
                    help="training examples each arch is scored on (default: 128)")
    pr.add_argument("--min-params", type=int, default=None, help="judge only archs with at least "
                    "this many parameters")
    pr.add_argument("--max-params", type=int, default=None, help="judge only archs with at most "
                    "this many parameters (within a narrow size band, size alone ranks less)")
    pr.add_argument("--png", type=Path, default=None,
                    help="the scatter plots (default: <table name>_proxies.png here)")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")

    ct = actions.add_parser("controllers", help="regret of each search controller on a table",
                            description="Run each controller over the table's networks many times "
                            "and print its regret (the table's best mean accuracy minus the best "
                            "found) against evaluations, mean ± sd over runs, with a plot.")
    ct.add_argument("table", type=Path, help="a table of `nas bench build` (TABLE.csv)")
    ct.add_argument("--controllers", nargs="+", default=None, metavar="NAME",
                    help="controllers (default: random aging grea autoformer nsga2)")
    ct.add_argument("--runs", type=int, default=20, help="runs per controller (default: 20)")
    ct.add_argument("--evaluations", type=int, default=200, help="evaluations per run (default: 200)")
    ct.add_argument("--png", type=Path, default=None,
                    help="the regret curves (default: <table name>_controllers.png here)")
    ct.add_argument("--quiet", action="store_true", help="no progress bar")

    su = actions.add_parser("supernet", help="how well trained supernets rank a table's archs",
                            description="Score the table's archs with each run's trained supernet "
                            "(its search's population evaluator) and print Kendall τ and Spearman ρ "
                            "against the table, over all archs and within the run's budget, beside "
                            "GradSign, a blend of both, the params baseline and the predictor's "
                            "rounds; mean ± sd over the runs.")
    su.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="searches' run directories")
    su.add_argument("table", type=Path, help="a table of `nas bench build` (TABLE.csv)")
    su.add_argument("--top", type=int, default=None, metavar="K",
                    help="candidates a retrain takes (default: the run's search.candidates)")
    su.add_argument("--quiet", action="store_true", help="no progress bar")


    pd = actions.add_parser("predictor", help="how well a predictor fitted on a few archs ranks the rest",
                            description="Fit each predictor on --labels archs of TABLE drawn at random "
                            "(--draws times) over zero-cost features at init, and print Kendall τ on "
                            "the other archs (all, and within --max-params) beside each single "
                            "feature and their rank vote (docs/bench.md).")
    pd.add_argument("table", type=Path, help="a table of `nas bench build` (TABLE.csv)")
    pd.add_argument("--features", nargs="+", default=None, metavar="NAME",
                    help="proxies used as features (default: naswot flops params)")
    pd.add_argument("--predictors", nargs="+", default=["ridge"], metavar="NAME",
                    help="predictors (default: ridge)")
    pd.add_argument("--labels", type=int, default=16, help="measured archs per draw (default: 16)")
    pd.add_argument("--draws", type=int, default=10, help="random draws (default: 10)")
    pd.add_argument("--max-params", type=int, default=None, help="also judge the archs with at most "
                    "this many parameters")
    pd.add_argument("--seeds", type=int, default=3, help="init seeds of the proxies (default: 3)")
    pd.add_argument("--encoding", action="store_true", help="add the arch encoding to the features")
    pd.add_argument("--quiet", action="store_true", help="no progress bar")


def _positive(flag: str, value: int) -> int:
    if value < 1:
        raise UsageError(f"nas bench: {flag} must be ≥ 1, got {value}")
    return value


def cmd_bench(args) -> None:
    if args.action == "build":
        from launch.bench.build import Recipe, build
        recipe = Recipe(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate)
        table = build(configs.space(args.space, args.space_options), args.out, data=args.data,
                      data_options=args.data_options, archs=None if args.all else args.archs,
                      seeds=args.seeds, recipe=recipe, workers=args.workers, seed=args.seed,
                      progress=not args.quiet)
        print(f"{args.out}: {len(table)} archs, mean test accuracy "
              f"{table.mean.min():.3f}–{table.mean.max():.3f}, "
              f"{table.seconds.sum() / 60:.1f} min of training")
        return
    from launch import bench
    if args.action == "proxies":
        from launch.bench import proxies
        table = bench.load(args.table).within(args.min_params, args.max_params)
        if len(table) < 3:
            raise UsageError(f"nas bench proxies: {len(table)} archs of {args.table} lie within "
                             "--min-params/--max-params; at least 3 are needed")
        names = args.proxies or None
        if names:
            from search import proxies as registry
            for name in names:
                registry.get(name)
        proxies.run(table, names, _positive("--seeds", args.seeds), _positive("--examples", args.examples),
                    args.png or Path(f"{args.table.stem}_proxies.png"), progress=not args.quiet)
    elif args.action == "controllers":
        from launch.bench import controllers
        controllers.run(bench.load(args.table), args.controllers, _positive("--runs", args.runs),
                        _positive("--evaluations", args.evaluations),
                        args.png or Path(f"{args.table.stem}_controllers.png"), progress=not args.quiet)
    elif args.action == "supernet":
        from launch.bench import supernet
        top = None if args.top is None else _positive("--top", args.top)
        supernet.run(args.run_dirs, bench.load(args.table), top, progress=not args.quiet)
    elif args.action == "predictor":
        from launch.bench import predictor
        from search import proxies as registry
        for name in args.features or ():
            registry.get(name)
        predictor.run(bench.load(args.table), args.features or predictor.FEATURES, args.predictors,
                      args.labels, _positive("--draws", args.draws), args.max_params,
                      _positive("--seeds", args.seeds), args.encoding, progress=not args.quiet)


def _pick(text: str) -> tuple[str, int | None]:
    """("best", None) or ("pareto", N) of a --pick value."""
    if text == "best":
        return "best", None
    kind, _, number = text.partition(":")
    if kind == "pareto" and number.isdigit() and int(number) >= 1:
        return "pareto", int(number)
    raise argparse.ArgumentTypeError(f"{text!r} is neither best nor pareto:N with N = 1, 2, … "
                                     "(1: the front's smallest network)")


def _plugin_flag(parser) -> None:
    parser.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE",
                        help="import this module first (your spaces, data sets, …); repeatable. "
                        "Recorded with the config (`plugins`) and in exports")


def _with_plugins(config: Path, overrides: list[str], added: list[str]) -> list[str]:
    """`overrides` plus one that adds the --plugin modules to the config's `plugins` (its
    own and any `--set plugins=…`)."""
    if not added:
        return overrides
    from launch import plugins
    plugins.load(added, "--plugin")  # what the config names may come from them
    recorded = configs.load(config, overrides).plugins
    return [*overrides, f"plugins={json.dumps(plugins.merged(recorded, added))}"]


def _distributed_flags(parser) -> None:
    group = parser.add_argument_group("multi-host (one process per host; see docs/scale.md)")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0's "
                       "coordination service (not needed on TPU pod slices or under SLURM)")
    group.add_argument("--num-processes", type=int, help="how many processes take part")
    group.add_argument("--process-id", type=int, help="this process's index, 0 … num-processes − 1")


def _initialize_devices(args) -> None:
    from launch import devices
    devices.initialize(args.coordinator, args.num_processes, args.process_id)


def _mapping(text: str) -> dict:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object: {text!r}")
    return value


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    return shape


def _fmt(n: int) -> str:
    return f"{n:,}"


def cmd_spaces(args) -> None:
    import spaces
    if args.action == "show":
        defaults = spaces.options(args.name)
        space = configs.space(args.name, args.space_options)
        space = space.bind(args.input_shape, args.num_classes)
        print(f"space {space.name}: {len(space.names)} choices, {_fmt(space.size())} architectures "
              f"(encodings), {_fmt(space.distinct_size())} distinct networks")
        print(f"input {space.input_shape}, {space.num_classes} classes")
        if defaults:
            print("options (space.options):")
            width = max(len(k) for k in defaults)
            for key, default in defaults.items():
                value = space.config.get(key, default)
                note = "" if value == default else f"  (default {configs.to_yaml(default)})"
                print(f"  {key:<{width}}  {configs.to_yaml(value)}{note}")
        print("choices:")
        width = max(len(k) for k in space.names)
        for key, options in space.choices.items():
            print(f"  {key:<{width}}  {', '.join(map(str, options))}")
        for label, cost in (("params", space.params), ("FLOPs", space.flops)):
            low, high, exact = space.extremes(cost)
            approx = "" if exact else " (coordinate search)"
            print(f"{label}: min {_fmt(cost(low))}, max {_fmt(cost(high))}{approx}")
        return
    # An encoding sets every choice; several encode one network when it leaves some unused.
    print(f"{'space':<10} {'choices':>8} {'architectures':>22} {'distinct networks':>22}")
    for name in spaces.names():
        space = spaces.get(name)
        print(f"{name:<10} {len(space.names):>8} {_fmt(space.size()):>22} "
              f"{_fmt(space.distinct_size()):>22}")


def cmd_config(args) -> None:
    print(configs.describe(args.section))


_SPARSITY_CONFIG = ("sparsity_levels", "sparsity_kernels")  # searched sparsity: nas train trains dense


def _read_arch(path: Path) -> tuple[dict, str | None, dict, Path | None]:
    """(choices, space name or None, space options, export directory or None) of an --arch
    file, an export directory or a run directory (its best/)."""
    from launch import export
    file = export.locate(path) / "arch.json" if path.is_dir() else path
    try:
        content = json.loads(file.read_text())
    except FileNotFoundError:
        raise UsageError(f"nas train: --arch file {str(file)!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"nas train: --arch file {str(file)!r} is not JSON ({err})") from None
    if not isinstance(content, dict):
        raise UsageError(f"nas train: --arch file {str(file)!r} must hold a JSON object")
    if "choices" not in content:
        return content, None, {}, None
    choices, described = content["choices"], content.get("space_config", {})
    if not isinstance(choices, dict) or not isinstance(described, dict) \
            or not isinstance(described.get("config", {}), dict):
        raise UsageError(f"nas train: --arch file {str(file)!r} is not an export: `choices` must "
                         "be an object and `space_config` a space description")
    options = {k: v for k, v in described.get("config", {}).items() if k not in _SPARSITY_CONFIG}
    return choices, content.get("space", described.get("name")), options, file.parent


def cmd_train(args) -> None:
    import nas
    from launch import export, plugins
    from launch.files import write_directory_atomic
    from launch.train import TrainConfig, train

    if args.out is not None and args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise UsageError(f"nas train: --out {str(args.out)!r} already exists and is not empty; "
                         "choose another directory or delete it")
    plugins.load(args.plugins, "--plugin")
    choices, named, options, exported = _read_arch(args.arch) if args.arch else (None, None, {}, None)
    info = export.read_info(exported) if exported is not None else {}
    recorded_plugins = plugins.load(info.get("plugins", []), f"{exported} plugins")
    if named and args.space and named != args.space:
        raise UsageError(f"nas train: --arch file is for space {named!r}, not --space {args.space!r}")
    name = args.space or named
    if not name:
        raise UsageError("nas train: --sample needs --space" if args.arch is None else
                         "nas train: give --space (the arch file does not name its space)")
    # An export is trained again on its own data set unless --data names another.
    data_section = {"name": args.data, "path": args.data_path, "options": args.data_options,
                    "val_fraction": args.val_fraction, "standardize": args.standardize}
    if exported is not None and args.data is None:
        recorded, _ = export.data_config(exported)
        data_section = {**dataclasses.asdict(recorded.data),
                        "standardize": "standardization" in info,
                        **{k: v for k, v in data_section.items() if v is not None}}
    given = {"plugins": plugins.merged(recorded_plugins, args.plugins) or None,
             "space": {"name": name, "options": {**options, **(args.space_options or {})}},
             "data": data_section,
             "retrain": {"epochs": args.epochs, "batch_size": args.batch_size,
                         "learning_rate": args.learning_rate, "warmup_epochs": args.warmup_epochs,
                         "weight_decay": args.weight_decay},
             "precision": {"compute": args.precision}, "seed": args.seed}
    raw = {k: {f: v for f, v in body.items() if v is not None} if isinstance(body, dict) else body
           for k, body in given.items() if body is not None}
    cfg = configs.from_dict(raw)
    space = configs.space(cfg.space.name, cfg.space.options)
    arch = space.sample(seed=args.sample) if choices is None else space.validate(choices)
    data = configs.dataset(cfg)
    train_cfg = TrainConfig.from_config(cfg)
    bound = space.bind(data.input_shape, data.num_classes)
    model = nas.supernet(bound.fix(arch), seed=cfg.seed, dtype=cfg.precision.compute)
    params, flops = bound.params(arch), bound.flops(arch)
    print(data.summary())
    print(f"{space.name} arch {json.dumps(arch)}" + (f" (options {json.dumps(space.config)})"
                                                     if cfg.space.options else ""))
    print(f"params {_fmt(params)}, FLOPs {_fmt(flops)} (multiply-accumulates per example)")
    result = train(model, data, train_cfg, progress=not args.quiet)
    print(f"trained {train_cfg.epochs} epochs in {result.seconds:.1f} s: "
          f"val accuracy {result.val_accuracy:.4f}, test accuracy {result.test_accuracy:.4f}")
    if args.out:
        if args.out.is_dir():
            args.out.rmdir()  # empty (checked above): the export is created whole in its place
        write_directory_atomic(args.out, lambda tmp: export.save(tmp, result.model, {
            "space": space.name, "choices": arch, "params": params, "flops": flops,
            "metrics": {"val_accuracy": result.val_accuracy, "test_accuracy": result.test_accuracy,
                        "train_seconds": result.seconds},
            "data": cfg.data.name, "retrain": vars(train_cfg), "space_config": bound.to_dict(),
            **export.preprocessing(data), "plugins": cfg.plugins, "engine": f"jaxnas {_VERSION}"}))
        print(f"wrote {args.out} (arch.json + Orbax weights)")


def cmd_search(args) -> None:
    from launch import config as configs
    from launch.run import run_search

    cfg = configs.load(args.config, _with_plugins(args.config, args.overrides, args.plugins))
    run_dir = args.out or Path("runs") / args.config.stem
    _initialize_devices(args)
    run_search(cfg, run_dir, progress=not args.quiet)


def cmd_tune(args) -> None:
    """Validate the experiment here, then replace this process (same pid, so a signal to
    `nas tune` reaches the driver) by the Ray driver: a fresh Python that never imports JAX,
    which this one has already imported through launch.config."""
    from launch.tune import check

    if args.num_samples is not None and args.num_samples < 1:
        raise UsageError(f"nas tune: --num-samples must be ≥ 1, got {args.num_samples}")
    out = args.out or Path("runs") / f"{args.config.stem}_tune"
    check.prepare(args.config, _with_plugins(args.config, args.overrides, args.plugins), args.num_samples,
                  out, args.resume)
    driver = [sys.executable, "-m", "launch.tune", str(out)]
    driver += ["--resume"] if args.resume else []
    driver += ["--address", args.address] if args.address else []
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, driver)


def cmd_resume(args) -> None:
    from launch.run import resume

    _initialize_devices(args)
    resume(args.run_dir, progress=not args.quiet)


def _contents(directory: Path) -> str:
    return ", ".join(p.name + ("/" if p.is_dir() else "") for p in sorted(directory.iterdir()))


def _not_written_by_export(directory: str, names: list[str]) -> set[str]:
    """What a copy of an export leaves out: leftovers of interrupted atomic writes (*.tmp)
    and symbolic links, which an export never writes (they could bring in files from
    outside the run)."""
    return {n for n in names if n.endswith(".tmp") or os.path.islink(os.path.join(directory, n))}


def cmd_export(args) -> None:
    from launch import export, plugins
    from launch.files import write_directory_atomic

    plugins.load(args.plugins, "--plugin")
    if args.out.exists():
        raise UsageError(f"nas export: --out {str(args.out)!r} already exists; choose another "
                         "directory or delete it")
    stablehlo = args.format == "stablehlo"
    kind, n = args.pick
    if kind == "best":
        source = export.locate(args.run_dir)

        def fill(tmp: Path) -> None:
            shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=_not_written_by_export)
            if stablehlo:
                exported = export.load(tmp)
                export.to_stablehlo(exported.model, tmp,
                                    standardization=exported.info.get("standardization"))
        print(f"export {source}")
    else:
        member = export.pareto_pick(args.run_dir, n)
        print(f"pareto pick {n}: {json.dumps(member.arch)} — {_fmt(member.params)} params, "
              f"supernet val accuracy {member.supernet_val_accuracy:.4f}; retraining it")
        from launch.run import export_arch

        def fill(tmp: Path) -> None:
            retrained = export_arch(args.run_dir, member.arch, tmp, f"pareto:{n}", progress=not args.quiet)
            print(f"retrained: val accuracy {retrained.val_accuracy:.4f}, test accuracy "
                  f"{retrained.test_accuracy:.4f}")
            if stablehlo:
                export.to_stablehlo(retrained.model, tmp,
                                    standardization=export.read_info(tmp).get("standardization"))
    write_directory_atomic(args.out, fill)
    print(f"wrote {args.out}: {_contents(args.out)}")


def cmd_eval(args) -> None:
    from launch import export, plugins

    plugins.load(args.plugins, "--plugin")
    directory = export.locate(args.dir)
    cfg, run_config = export.data_config(directory, args.data, args.data_path, args.data_options)
    data = configs.dataset(cfg)
    info = export.read_info(directory)
    print(f"export {directory}: {info.get('space')} {json.dumps(info['choices'])}")
    print(data.summary())
    source = f"from {run_config}" if run_config else "seed from arch.json, default val_fraction"
    print(f"splits: seed {cfg.seed}, val_fraction {cfg.data.val_fraction} ({source})")
    metrics = export.evaluate(directory, data)
    recorded = info.get("metrics", {}) if cfg.data.name == info.get("data") else {}
    for split in ("test", "val"):
        key = f"{split}_accuracy"
        if key not in metrics:
            continue
        # repr: the exact float, comparable with arch.json's.
        line = f"{split} accuracy {metrics[key]!r} ({_fmt(metrics[f'{split}_examples'])} examples)"
        if recorded.get(key) is not None:
            same = "equal" if recorded[key] == metrics[key] else "differs"
            line += f"; arch.json records {recorded[key]!r} ({same})"
        print(line)


def cmd_data(args) -> None:
    from launch import data, plugins

    if args.action is None:
        for name in data.names():
            doc = (data.loader(name).__doc__ or "").strip().splitlines()
            print(f"{name:14s} {doc[0] if doc else ''}")
        return
    from launch.data import array_record, tools
    if args.action == "convert":
        plugins.load(args.plugins, "--plugin")
        is_name = args.source in data.names() and args.source_name is None
        source = args.source if is_name else args.source_name
        path = None if is_name else args.source
        if args.shard_records is not None and args.shard_records < 1:
            raise UsageError(f"nas data convert: --shard-records must be ≥ 1, got {args.shard_records}")
        spec = tools.convert(source, path, args.options, args.out, dtype=args.dtype,
                             shard_records=args.shard_records or array_record.SHARD_RECORDS,
                             progress=not args.quiet)
        sizes = ", ".join(f"{n} {_fmt(s['examples'])}" for n, s in spec["splits"].items())
        print(f"wrote {args.out}: {sizes} examples of {spec['input_shape']} stored as {spec['dtype']}")
        print(f"search it with: data: {{name: array_record, path: {args.out}}}")
        return
    spec = array_record.read_spec(args.dir)
    splits = {n: array_record.ArrayRecordSource(args.dir, spec, n) for n in spec["splits"]}
    print(f"{args.dir}: input {spec['input_shape']} stored as {spec['dtype']} (÷ {spec['divisor']:g}), "
          f"{spec['num_classes']} classes, kind {spec.get('kind', 'array')}")
    for name, split in splits.items():
        print(f"  {name}: {_fmt(len(split))} examples in {len(split.paths)} shard(s)")
    if args.count < 1:
        raise UsageError(f"nas data show: --count must be ≥ 1, got {args.count}")
    from launch import plots
    png = args.png or Path(f"{args.dir.resolve().name}-examples.png")
    plots.save(tools.show(args.dir, args.count), png)
    print(f"wrote {png}")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    commands = {"spaces": cmd_spaces, "config": cmd_config, "train": cmd_train, "search": cmd_search,
                "tune": cmd_tune, "resume": cmd_resume, "export": cmd_export, "eval": cmd_eval,
                "data": cmd_data, "bench": cmd_bench}
    try:
        args = _build_parser().parse_args(argv)
        if argv is None and args.command not in ("spaces", "config", "data"):
            xla_cache.enable()  # the `nas` program's commands that compile (not calls from Python)
        commands[args.command](args)
        return 0
    except (UsageError, ValueError, OSError) as err:
        # Anticipated failures: bad flags, configs, files (missing, corrupt, unreadable).
        if os.environ.get("NAS_DEBUG") and not isinstance(err, UsageError):
            raise
        message = str(err)
        if isinstance(err, UsageError):  # "nas train: …" → "nas: error: train: …"
            message = message.removeprefix("nas: ").removeprefix("nas ")
        print(" ".join(f"nas: error: {message}".split()), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
