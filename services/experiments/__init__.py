"""A/B experiments on what Drape makes: definitions, deterministic assignment, variant
recipes, exposures, orders and returns, and the return-rate report.

Layers (numeric code never imports gRPC):

- :mod:`.definition`  experiment definitions from a TOML or JSON file, validated;
- :mod:`.assignment`  the salted-hash assignment and a variant's recipe applied to requests;
- :mod:`.store`       one storage interface, SQLite (embedded default) and PostgreSQL,
  with versioned migrations;
- :mod:`.ingest`      exposures, orders and returns from Kafka or CSV;
- :mod:`.stats`       the statistics (statsmodels, scipy);
- :mod:`.report`      the per-variant report, text and HTML with the cumulative plot;
- :mod:`.server`      ``ExperimentService`` over gRPC;
- :mod:`.cli`, :mod:`.demo`  ``drape experiments …`` and ``make demo-experiment``.
"""
