"""A real S3 API on loopback for tests: moto's server mode in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from services.common.kafka import free_port, wait_for_port

ACCESS_KEY = "drape-test-key"
SECRET_KEY = "drape-test-secret"
REGION = "us-east-1"


class MotoS3:
    """``moto_server`` on a free loopback port.

    Attributes:
        endpoint: ``http://127.0.0.1:PORT``.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, free_port(host)
        self.endpoint = f"http://{host}:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> MotoS3:
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from moto.server import main; main()",
             "-H", self.host, "-p", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"},
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"moto_server exited: {self._log.read()[-2000:]!r}")
            if wait_for_port(self.host, self.port, 0.2):
                return self
        self.stop()
        raise RuntimeError(f"moto_server did not listen on {self.endpoint} within {timeout} s")

    def client(self, **kwargs):
        """A :class:`~services.catalog_adapter.s3.S3Client` on this server, test keys."""
        from services.catalog_adapter.s3 import S3Client

        return S3Client(self.endpoint, REGION, ACCESS_KEY, SECRET_KEY, **kwargs)

    def bucket(self, name: str) -> str:
        """Create ``name`` (idempotent) and return it."""
        self.client().create_bucket(name)
        return name

    def env(self) -> dict[str, str]:
        """Settings environment for an s3:// store on this server."""
        return {
            "DRAPE_CATALOG_S3_ENDPOINT": self.endpoint,
            "DRAPE_CATALOG_S3_REGION": REGION,
            "DRAPE_CATALOG_S3_ACCESS_KEY": ACCESS_KEY,
            "DRAPE_CATALOG_S3_SECRET_KEY": SECRET_KEY,
        }

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        self.proc = None
