"""What every Drape service shares: configuration, media I/O with limits, the error
taxonomy and its gRPC mapping, server bootstrap, metrics, logs and long-running operations.

Numeric pipeline code imports :mod:`services.common.errors`, :mod:`services.common.images`
and :mod:`services.common.cancel`, never gRPC; only ``server``/``interceptors`` touch grpc.
"""

__version__ = "0.1.0"
