"""S3 fixtures: moto's standalone server on 127.0.0.1, spoken to by a real boto3 over real HTTP."""

from __future__ import annotations

import os
import uuid

import pytest
from server_backend import (  # noqa: F401 - the "server" backend of the store tests
    pytest_generate_tests,
    server_store_template,
    store_url,
)

# Dummy credentials, and no profile, config file or endpoint from the developer's machine.
_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
_AWS_UNSET = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "MODELPACK_S3_ENDPOINT_URL",
)


@pytest.fixture(scope="session")
def aws_credentials(tmp_path_factory):
    """Dummy AWS credentials in os.environ for the session; the old values come back after."""
    missing = str(tmp_path_factory.mktemp("aws") / "absent")
    wanted = {
        **_AWS_ENV,
        "AWS_CONFIG_FILE": missing,
        "AWS_SHARED_CREDENTIALS_FILE": missing,
    }
    saved = {key: os.environ.get(key) for key in (*wanted, *_AWS_UNSET)}
    os.environ.update(wanted)
    for key in _AWS_UNSET:
        os.environ.pop(key, None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def moto_server(aws_credentials):
    """The endpoint URL of a moto S3 server running in a thread on a free port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(moto_server):
    """``(endpoint_url, bucket)`` for a fresh, empty bucket on the moto server."""
    import boto3

    bucket = f"modelpack-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket=bucket)
    return moto_server, bucket
