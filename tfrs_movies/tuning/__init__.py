"""Hyperparameter search over the layered config: grid or Optuna, parallel, resumable.

- :mod:`~tfrs_movies.tuning.grid`: the search-space file (axes, derived keys, Optuna distributions),
  grid expansion and the stable trial id;
- :mod:`~tfrs_movies.tuning.trial`: one trial (fit on train, figures on validation only);
- :mod:`~tfrs_movies.tuning.store`: the tuning directory (one folder per trial, results CSV);
- :mod:`~tfrs_movies.tuning.hparams`: TensorBoard HParams records;
- :mod:`~tfrs_movies.tuning.plots`: seed 000's PNG plots;
- :mod:`~tfrs_movies.tuning.runner`: worker processes, resume, the winner and its one test figure.

The command line is ``python -m tfrs_movies.tune``.
"""
