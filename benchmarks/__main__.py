"""Run every benchmark: `python -m benchmarks [--quick]`."""
import argparse

from benchmarks import search_steps, supernet_overhead


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    repeats = 5 if args.quick else 20
    supernet_overhead.run(repeats=repeats)
    search_steps.run(repeats=repeats)


if __name__ == "__main__":
    main()
