"""Shared, non-test code of the test suite (test files import from here, never from each other).

* ``trainer``: the fake in-memory loader, a tiny video model and the run config
  (``--config tests/helpers/trainer.py:smoke``);
* ``parity``: the golden-file cases and the torch == JAX == golden check;
* ``files``: CSV rows in and out, and the no-JAX preamble of echoforge's subprocess checks;
* ``workers/``: scripts the multi-process tests start as subprocesses (one process of a job each).

Fixtures live in tests/conftest.py.
"""
