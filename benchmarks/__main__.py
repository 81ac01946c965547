"""Run every benchmark: `python -m benchmarks [--quick]`."""
import argparse

from benchmarks import supernet_overhead


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    supernet_overhead.run(repeats=5 if args.quick else 20)


if __name__ == "__main__":
    main()
