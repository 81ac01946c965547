"""Everything that runs: config, data, training loops, checkpoints, export, the `nas` CLI."""
