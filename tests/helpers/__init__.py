"""Shared test helpers, imported as ``tests.helpers.<module>`` (pytest puts the repository root on ``sys.path``).

* :mod:`tests.helpers.model_batches`: hand-built ``TokenBatch`` objects for the model tests.
* :mod:`tests.helpers.cli_runs`: the real ``hipo`` command in a subprocess, and what it left behind.
* :mod:`tests.helpers.data_perf_prepare`: timing of data preparation (also runnable alone).
* ``sitecustomize.py`` is not imported by the tests: this folder is put on ``PYTHONPATH`` of the ``hipo``
  subprocesses (see ``cli_runs.run_hipo``), whose start-up then imports it as a top-level module (fault injection).
"""
