"""Run every benchmark: `python -m benchmarks [--quick] [--only NAME ...]`."""
import argparse

from benchmarks import (
    checkpoints,
    data,
    mask_tax,
    peer,
    proxies,
    scale,
    search_steps,
    sparse_accuracy,
    sparse_costs,
    splits,
    supernet_overhead,
)

BENCHMARKS = ("supernet_overhead", "search_steps", "mask_tax", "peer", "scale", "checkpoints", "sparse_costs",
              "sparse_accuracy", "proxies", "splits", "data")


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions; sparse accuracy with 1 seed and short training; "
                        "proxies on 4 archs × 32 examples; splits with 1 seed, 60 evaluations, "
                        "5 retrain epochs")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=BENCHMARKS,
                        help="run only these benchmarks")
    args = parser.parse_args()
    repeats = 5 if args.quick else 20
    if "supernet_overhead" in args.only:
        supernet_overhead.run(repeats=repeats)
    if "search_steps" in args.only:
        search_steps.run(repeats=repeats)
    if "mask_tax" in args.only:
        mask_tax.run(repeats=repeats)
    if "peer" in args.only:
        peer.run(repeats=3 if args.quick else 5)
    if "scale" in args.only:
        scale.run(repeats=repeats)
    if "checkpoints" in args.only:
        checkpoints.run(epochs=3 if args.quick else 5)
    if "sparse_costs" in args.only:
        sparse_costs.run(repeats=3 if args.quick else 5)
    if "sparse_accuracy" in args.only:
        if args.quick:
            sparse_accuracy.run(seeds=1, epochs={"mnist1d-mlp": 50, "digits-mlp": 50, "mnist1d-cnn1d": 20})
        else:
            sparse_accuracy.run()
    if "proxies" in args.only:
        if args.quick:
            proxies.run(repeats=1, n_archs=4, chunks=(1, 4), examples=32)
        else:
            proxies.run(repeats=3)
    if "splits" in args.only:
        splits.run(quick=args.quick)
    if "data" in args.only:
        data.run(quick=args.quick)


if __name__ == "__main__":
    main()
