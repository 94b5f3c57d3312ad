"""A real S3 server for tests: moto's (`python -m moto.server`, from PyPI's moto[server]) on a free loopback port,
as a subprocess. With `check_signatures` it verifies SigV4 against keys made through its IAM API (the first three
calls are let through unsigned to make them), as MinIO does; without, it takes any keys."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from tests.ports import free_port

REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    url: str
    access_key: str
    secret_key: str

    @property
    def endpoint(self) -> str:
        return self.url.removeprefix("http://")



def _iam_keys(url: str) -> tuple[str, str]:
    import boto3

    iam = boto3.client("iam", endpoint_url=url, region_name=REGION, aws_access_key_id="bootstrap",
                       aws_secret_access_key="bootstrap")
    iam.create_user(UserName="gateway")
    iam.put_user_policy(UserName="gateway", PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="gateway")["AccessKey"]
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


@contextlib.contextmanager
def running_s3(check_signatures: bool = False) -> Iterator[S3Server]:
    port = free_port()
    environment = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3" if check_signatures else "inf",
                   "MOTO_ALLOW_NONEXISTENT_REGION": "false"}
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/moto-api/data.json", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.05)
        access_key, secret_key = _iam_keys(url) if check_signatures else ("test-access-key", "test-secret-key")
        yield S3Server(url, access_key, secret_key)
    finally:
        process.terminate()
        process.wait(10)
