"""Run moto's standalone S3 server on a free loopback port, for tests and benchmarks.

The server speaks the S3 REST API over HTTP on 127.0.0.1 only; every client built from it
gets that ``endpoint_url``, dummy keys and ``AWS_EC2_METADATA_DISABLED=true``, so nothing
ever reaches AWS (not even the instance-metadata address for credentials).
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from typing import Any

from dedupstore.testing.service import ProcessService

__all__ = ["S3_ENVIRONMENT", "S3Server", "S3ServerError"]

#: Dummy credentials and a fixed region: moto accepts any key, and no lookup of real
#: credentials (files, instance metadata) ever runs.
S3_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


class S3ServerError(RuntimeError):
    """moto's S3 server could not be started."""


class S3Server(ProcessService):
    """A ``moto.server`` process of our own, bound to 127.0.0.1 and stopped by its PID.

    It keeps everything in memory and leaves nothing behind. Use it as a context manager::

        with S3Server() as server:
            server.create_bucket("media")
            inner = {"BACKEND": "storages.backends.s3.S3Storage",
                     "OPTIONS": server.storage_options("media")}
    """

    error = S3ServerError
    stop_timeout = 10.0

    def __init__(self, *, python: str | None = None, start_timeout: float = 60.0) -> None:
        self.python = python or sys.executable
        self.start_timeout = start_timeout
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        """Return the ``http://`` URL of the running server."""
        if self.port is None:
            raise S3ServerError("the S3 server is not running")
        return f"http://{self.host}:{self.port}"

    def start(self) -> S3Server:
        """Start the server on a free port and wait until it answers an S3 request."""
        # moto imports every service on start: on a busy machine that takes many seconds.
        self._start_process("moto.server did not start")
        return self

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [self.python, "-m", "moto.server", "--host", self.host, "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **S3_ENVIRONMENT},
        )

    def _probe(self, port: int) -> bool:
        connection = http.client.HTTPConnection(self.host, port, timeout=5)
        try:
            connection.request("GET", "/moto-api/data.json")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def stop(self) -> None:
        """Stop the server by its PID."""
        if self.process is not None:
            self._stop_process(self.process)
            self.process = None
            self.port = None

    def client(self) -> Any:
        """Return a boto3 S3 client for this server (loopback endpoint, dummy keys)."""
        os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=S3_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_ENVIRONMENT["AWS_DEFAULT_REGION"],
        )

    def create_bucket(self, bucket: str, *, versioning: bool = False) -> str:
        """Create ``bucket`` (versioned if asked: every PUT then keeps a version)."""
        client = self.client()
        client.create_bucket(Bucket=bucket)
        if versioning:
            client.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
            )
        return bucket

    def storage_options(self, bucket: str, **extra: Any) -> dict[str, Any]:
        """Return django-storages ``S3Storage`` OPTIONS for ``bucket`` on this server."""
        os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
        return {
            "bucket_name": bucket,
            "endpoint_url": self.endpoint_url,
            "access_key": S3_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
            "secret_key": S3_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
            "region_name": S3_ENVIRONMENT["AWS_DEFAULT_REGION"],
            **extra,
        }
