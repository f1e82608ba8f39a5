"""Catalog adapter: product events from Kafka in, try-on stills (and clips) of every stock
model of a merchant's roster out, with nothing lost and nothing made twice.

* :mod:`~services.catalog_adapter.adapter` the consumer/producer loop, retries, dead letters;
* :mod:`~services.catalog_adapter.jobs` the idempotent job (content-hash keys);
* :mod:`~services.catalog_adapter.store` the asset store (filesystem, S3-compatible);
* :mod:`~services.catalog_adapter.roster` merchant rosters of stock-model photos;
* :mod:`~services.catalog_adapter.runners` the still and clip steps (in-process or gRPC);
* :mod:`~services.catalog_adapter.publish` sample events and ``drape catalog publish``;
* :mod:`~services.catalog_adapter.main` the process entry (``drape catalog run``).
"""
