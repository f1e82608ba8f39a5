"""The S3 asset store through botocore against a real S3 API on loopback (moto's server
mode): round trips, multipart uploads, conditional writes, the default credential chain
(web identity through STS, as EKS IRSA uses it) and the error mapping."""

from __future__ import annotations

import os

import pytest
from s3server import ACCESS_KEY, REGION, SECRET_KEY

from services.catalog_adapter.runners import ReferenceReader
from services.catalog_adapter.s3 import S3Client
from services.catalog_adapter.store import S3Store, open_store, s3_client_from_settings
from services.common.config import load_settings
from services.common.errors import InvalidInputError, UnavailableError
from services.common.kafka import free_port

MiB = 1024 * 1024


@pytest.fixture
def no_ambient_credentials(monkeypatch, tmp_path):
    """Nothing for botocore's chain to find but what a test sets."""
    for name in list(os.environ):
        if name.startswith("AWS_") and name != "AWS_EC2_METADATA_DISABLED":
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))


def test_store_round_trip_under_a_prefix(s3_server):
    bucket = s3_server.bucket("drape-roundtrip")
    settings = load_settings(env={**s3_server.env(), "DRAPE_CATALOG_ASSET_STORE": "s3://x/y"})
    store = open_store(f"s3://{bucket}/assets/v1", settings)
    assert isinstance(store, S3Store)
    store.put("acme/sku-1/still.jpg", b"\xff\xd8jpeg", "image/jpeg")
    store.put("acme/sku-2/clip.mp4", b"mp4", "video/mp4")
    store.put("other/x.json", b"{}", "application/json")
    assert store.get("acme/sku-1/still.jpg") == b"\xff\xd8jpeg"
    assert store.get("acme/missing.jpg") is None
    assert store.list("acme/") == ["acme/sku-1/still.jpg", "acme/sku-2/clip.mp4"]
    assert store.uri("acme/sku-1/still.jpg") == f"s3://{bucket}/assets/v1/acme/sku-1/still.jpg"
    raw = s3_server.client().client.get_object(Bucket=bucket, Key="assets/v1/other/x.json")
    assert raw["ContentType"] == "application/json"  # the prefix is really in the key
    store.delete("other/x.json")
    store.delete("other/x.json")  # absent: no error
    assert store.get("other/x.json") is None


def test_listing_follows_pages(s3_server):
    bucket = s3_server.bucket("drape-pages")
    client = s3_server.client()
    for i in range(7):
        client.client.put_object(Bucket=bucket, Key=f"p/{i:05d}", Body=b"")
    client.client.put_object(Bucket=bucket, Key="q/0", Body=b"")
    keys = client.list_objects(bucket, "p/", page_size=2)  # four pages
    assert keys == [f"p/{i:05d}" for i in range(7)]


def test_large_objects_go_up_in_parts(s3_server):
    bucket = s3_server.bucket("drape-multipart")
    client = s3_server.client(multipart_threshold=5 * MiB)
    data = os.urandom(11 * MiB)
    client.put_object(bucket, "big.bin", data)
    assert client.get_object(bucket, "big.bin") == data
    # A multipart object's ETag is the MD5 of its parts' MD5s, suffixed with their count.
    etag = client.client.head_object(Bucket=bucket, Key="big.bin")["ETag"].strip('"')
    assert etag.endswith("-2") or etag.endswith("-3"), etag
    client.put_object(bucket, "small.bin", b"x" * 1000)
    etag = client.client.head_object(Bucket=bucket, Key="small.bin")["ETag"].strip('"')
    assert "-" not in etag


def test_bounded_read(s3_server):
    bucket = s3_server.bucket("drape-bounded")
    client = s3_server.client()
    client.put_object(bucket, "k", b"0123456789")
    assert client.get_object(bucket, "k", max_bytes=4) == b"01234"  # limit + 1: "too large"


def test_conditional_put_lets_one_writer_win(s3_server):
    bucket = s3_server.bucket("drape-conditional")
    store = S3Store(s3_server.client(), bucket, "ops")
    assert store.put_if_absent("requests/a", b"first") is True
    assert store.put_if_absent("requests/a", b"second") is False
    assert store.get("requests/a") == b"first"


def test_reference_reader_reads_s3_references(s3_server):
    bucket = s3_server.bucket("drape-refs")
    settings = load_settings(env=s3_server.env())
    client = s3_client_from_settings(settings)
    client.put_object(bucket, "garments/tee.png", b"png-bytes")
    reader = ReferenceReader(max_bytes=1000, s3=client)
    assert reader(f"s3://{bucket}/garments/tee.png") == b"png-bytes"
    with pytest.raises(InvalidInputError) as ei:
        reader(f"s3://{bucket}/garments/absent.png")
    assert ei.value.reason == "GARMENT_FETCH_FAILED"


def test_missing_bucket_is_refused_not_retried(s3_server):
    client = s3_server.client()
    with pytest.raises(InvalidInputError) as ei:
        client.put_object("drape-no-such-bucket", "k", b"x")
    assert ei.value.reason == "ASSET_STORE_REFUSED"
    assert "NoSuchBucket" in ei.value.message and SECRET_KEY not in ei.value.message


def test_unreachable_endpoint_is_transient():
    port = free_port()  # nothing listens there
    client = S3Client(
        f"http://127.0.0.1:{port}", REGION, ACCESS_KEY, SECRET_KEY, timeout=2, max_attempts=2
    )
    with pytest.raises(UnavailableError) as ei:
        client.get_object("drape-b", "k")
    assert ei.value.reason == "ASSET_STORE_FAILED"
    assert SECRET_KEY not in ei.value.message


def test_credentials_in_the_endpoint_url_are_not_used_or_kept(s3_server):
    host = s3_server.endpoint.removeprefix("http://")
    client = S3Client(f"http://user:pw@{host}", REGION, ACCESS_KEY, SECRET_KEY)
    assert "pw" not in client.client.meta.endpoint_url
    bucket = s3_server.bucket("drape-userinfo")
    client.put_object(bucket, "k", b"v")
    assert client.get_object(bucket, "k") == b"v"


def test_half_a_key_pair_is_a_configuration_error():
    with pytest.raises(ValueError, match="both"):
        S3Client("http://127.0.0.1:9", REGION, ACCESS_KEY, "")


def test_no_keys_and_nothing_in_the_chain_fails_cleanly(s3_server, no_ambient_credentials):
    client = S3Client(s3_server.endpoint, REGION, max_attempts=1)
    with pytest.raises(UnavailableError) as ei:
        client.get_object("drape-roundtrip", "k")
    assert ei.value.reason == "ASSET_STORE_FAILED" and "NoCredentials" in ei.value.message


def test_default_chain_takes_environment_keys(s3_server, no_ambient_credentials, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    client = S3Client(s3_server.endpoint, REGION)
    bucket = s3_server.bucket("drape-envkeys")
    client.put_object(bucket, "k", b"v")
    assert client.get_object(bucket, "k") == b"v"
    creds = client.client._request_signer._credentials.get_frozen_credentials()
    assert creds.access_key == "env-key"


def test_default_chain_assumes_a_role_with_web_identity(
    s3_server, no_ambient_credentials, monkeypatch, tmp_path
):
    # What EKS IRSA sets in a pod: a role and a projected service-account token. botocore
    # trades the token for temporary credentials at STS (here moto's, on loopback).
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJkcmFwZSJ9.c2ln")
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/drape-assets")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ROLE_SESSION_NAME", "drape-test")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", s3_server.endpoint)
    client = S3Client(s3_server.endpoint, REGION)
    bucket = s3_server.bucket("drape-irsa")
    client.put_object(bucket, "k", b"v")
    assert client.get_object(bucket, "k") == b"v"
    creds = client.client._request_signer._credentials.get_frozen_credentials()
    assert creds.token  # temporary (STS) credentials: a session token came with them
    assert creds.access_key not in ("", ACCESS_KEY)
