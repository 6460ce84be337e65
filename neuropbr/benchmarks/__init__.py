"""The machinery behind ``python -m neuropbr.bench``: suites of cases, the per-case worker process,
the environment record and the report tables."""
