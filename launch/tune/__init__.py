"""`nas tune`: many searches as Ray Tune trials, with early stopping and restore.

    spec      the config's `tune:` section (param space, scheduler, metric, resources)
    check     validation of every drawable value against launch.config, before Ray starts;
              DIR/experiment.json (runs in the `nas` process, which imports JAX)
    driver    `python -m launch.tune DIR`: Ray Tune in a process that never imports JAX
    trial     one trial: a `nas search` run reporting per supernet epoch and search generation
    results   DIR/results.csv, DIR/results.png, DIR/best/

docs/tune.md describes the command; only `check` and `trial`'s function body import JAX.
"""
