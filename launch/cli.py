"""The `nas` command line.

    nas spaces                       list the search spaces with their sizes
    nas spaces show NAME             choices, size, min/max params and FLOPs
    nas train --space S (--arch ARCH.json | --sample SEED) [--data D]
                                     train one fixed architecture from scratch
    nas search CONFIG.yaml [--out RUN_DIR] [--set key=value ...]
                                     supernet → search → retrain → test → export

Bad input prints one line `nas: error: …` and exits with status 2 (NAS_DEBUG=1 shows
the traceback instead).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from launch import __version__ as _VERSION


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
                             "or show one space's choices and cost range.")
    sp_sub = sp.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    show = sp_sub.add_parser("show", help="choices, size, min/max params and FLOPs of a space",
                             description="Show a space's choices, its size, and the smallest and "
                             "largest parameter counts and FLOPs (multiply-accumulates).")
    show.add_argument("name", help="space name (see `nas spaces`)")
    show.add_argument("--input-shape", type=_shape, default=None,
                      help="input shape without batch, e.g. 32,32,3 (default: the space's)")
    show.add_argument("--num-classes", type=int, default=None, help="outputs (default: the space's)")

    tr = commands.add_parser("train", help="train one fixed architecture from scratch",
                             description="Train one architecture from scratch (the baseline every "
                             "search is compared with) and print its test accuracy.")
    tr.add_argument("--space", help="space name; optional when --arch names its space")
    which = tr.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", type=Path, help="JSON file: {choice: option} or an arch.json "
                       "export ({\"space\": …, \"choices\": {…}})")
    which.add_argument("--sample", type=int, metavar="SEED", help="train the space's random arch "
                       "drawn with this seed")
    tr.add_argument("--data", default="mnist1d", help="digits | mnist1d | npz | synthetic "
                    "(default: mnist1d)")
    tr.add_argument("--data-path", help="file for --data npz (x_train, y_train, x_test, y_test)")
    tr.add_argument("--val-fraction", type=float, default=0.1,
                    help="share of the training split held out for validation (default: 0.1)")
    tr.add_argument("--epochs", type=int, default=100, help="default: 100")
    tr.add_argument("--batch-size", type=int, default=128, help="default: 128")
    tr.add_argument("--lr", type=float, default=1e-2, help="AdamW peak learning rate "
                    "(cosine decay; default: 0.01)")
    tr.add_argument("--weight-decay", type=float, default=1e-4, help="default: 1e-4")
    tr.add_argument("--seed", type=int, default=0, help="init, split and batch-order seed "
                    "(default: 0)")
    tr.add_argument("--out", type=Path, help="write arch.json with the metrics into this directory")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")

    se = commands.add_parser("search", help="search an architecture end to end",
                             description="Train a supernet, search it, retrain the chosen "
                             "architecture, test it and export it (see examples/*.yaml). An "
                             "existing run dir with the same config is resumed.")
    se.add_argument("config", type=Path, help="YAML config (see examples/)")
    se.add_argument("--out", type=Path, help="run directory (default: runs/<config name>)")
    se.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one config field, e.g. --set search.max_params=5000 "
                    "(repeatable)")
    se.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}")
    return shape


def _fmt(n: int) -> str:
    return f"{n:,}"


def cmd_spaces(args) -> None:
    import spaces
    if args.action == "show":
        space = spaces.get(args.name).bind(args.input_shape, args.num_classes)
        print(f"space {space.name}: {len(space.names)} choices, {_fmt(space.size())} architectures")
        print(f"input {space.input_shape}, {space.num_classes} classes")
        width = max(len(k) for k in space.names)
        for key, options in space.choices.items():
            print(f"  {key:<{width}}  {', '.join(map(str, options))}")
        for label, cost in (("params", space.params), ("FLOPs", space.flops)):
            low, high, exact = space.extremes(cost)
            approx = "" if exact else " (coordinate search)"
            print(f"{label}: min {_fmt(cost(low))}, max {_fmt(cost(high))}{approx}")
        return
    print(f"{'space':<10} {'choices':>8} {'architectures':>22}")
    for name in spaces.names():
        space = spaces.get(name)
        print(f"{name:<10} {len(space.names):>8} {_fmt(space.size()):>22}")


def _read_arch(args):
    import spaces
    if args.arch is None:
        if not args.space:
            raise UsageError("nas train: --sample needs --space")
        space = spaces.get(args.space)
        return space, space.sample(seed=args.sample)
    try:
        content = json.loads(args.arch.read_text())
    except FileNotFoundError:
        raise UsageError(f"nas train: --arch file {str(args.arch)!r} does not exist") from None
    except json.JSONDecodeError as err:
        raise UsageError(f"nas train: --arch file {str(args.arch)!r} is not JSON ({err})") from None
    if not isinstance(content, dict):
        raise UsageError(f"nas train: --arch file {str(args.arch)!r} must hold a JSON object")
    named = content.get("space") if "choices" in content else None
    if named and args.space and named != args.space:
        raise UsageError(f"nas train: --arch file is for space {named!r}, not --space {args.space!r}")
    name = args.space or named
    if not name:
        raise UsageError("nas train: give --space (the arch file does not name its space)")
    space = spaces.get(name)
    return space, space.validate(content.get("choices", content))


def cmd_train(args) -> None:
    import nas
    from launch import data as datasets
    from launch.files import write_json_atomic
    from launch.train import TrainConfig, train

    space, arch = _read_arch(args)
    options = {"path": args.data_path} if args.data_path else {}
    data = datasets.load(args.data, seed=args.seed, val_fraction=args.val_fraction, **options)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                      weight_decay=args.weight_decay, seed=args.seed)
    bound = space.bind(data.input_shape, data.num_classes)
    model = nas.supernet(bound.fix(arch), seed=args.seed)
    params, flops = bound.params(arch), bound.flops(arch)
    print(data.summary())
    print(f"{space.name} arch {json.dumps(arch)}")
    print(f"params {_fmt(params)}, FLOPs {_fmt(flops)} (multiply-accumulates per example)")
    result = train(model, data, cfg, progress=not args.quiet)
    print(f"trained {cfg.epochs} epochs in {result.seconds:.1f} s: "
          f"val accuracy {result.val_accuracy:.4f}, test accuracy {result.test_accuracy:.4f}")
    if args.out:
        write_json_atomic(args.out / "arch.json", {
            "space": space.name, "choices": arch, "params": params, "flops": flops,
            "metrics": {"val_accuracy": result.val_accuracy, "test_accuracy": result.test_accuracy,
                        "train_seconds": result.seconds},
            "data": args.data, "train": vars(cfg), "engine": f"jaxnas {_VERSION}"})
        print(f"wrote {args.out / 'arch.json'}")


def cmd_search(args) -> None:
    from launch import config as configs
    from launch.run import run_search

    cfg = configs.load(args.config, args.overrides)
    run_dir = args.out or Path("runs") / args.config.stem
    run_search(cfg, run_dir, progress=not args.quiet)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args = _build_parser().parse_args(argv)
        if args.command == "spaces":
            cmd_spaces(args)
        elif args.command == "train":
            cmd_train(args)
        elif args.command == "search":
            cmd_search(args)
        return 0
    except UsageError as err:
        print(f"{err}", file=sys.stderr)
        return 2
    except ValueError as err:
        if os.environ.get("NAS_DEBUG"):
            raise
        print(f"nas: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
