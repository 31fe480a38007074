"""Planning, dispatch and roll-up: the CLI, result files and (later) specs, the grid
driver and tables. Knows nothing of circuits: it calls workers.trial.run_trial."""
