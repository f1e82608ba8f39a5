"""Credentials in URL settings are redacted wherever settings are printed, and unknown
``DRAPE_*`` environment variables are named at start-up (refused when strict)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from services.cli import main
from services.common.config import load_settings, redact_url, unknown_env
from services.common.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("https://AKIA123:s3cr3t@s3.example.com:9000", "https://***@s3.example.com:9000"),
        ("http://user@minio.local/bucket", "http://***@minio.local/bucket"),
        ("alice:pw@10.0.0.1:9092,alice:pw@10.0.0.2:9092", "***@10.0.0.1:9092,***@10.0.0.2:9092"),
        ("SASL_SSL://alice:pw@broker:9093", "SASL_SSL://***@broker:9093"),
        (
            "https://h/o?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=abc&part=2",
            "https://h/o?X-Amz-Credential=***&X-Amz-Signature=***&part=2",
        ),
        ("https://h/path?token=t0k3n", "https://h/path?token=***"),
        ("https://a:b@h/x@y", "https://***@y"),  # ambiguous: over-redacted, never leaked
        ("s3://bucket/prefix", "s3://bucket/prefix"),
        ("127.0.0.1:9092", "127.0.0.1:9092"),
        ("merchant@example", "merchant@example"),  # no scheme, no password: not a URL
    ],
)
def test_redact_url(raw, shown):
    assert redact_url(raw) == shown


def test_drape_config_prints_no_url_credentials(monkeypatch, capsys):
    for key in [k for k in os.environ if k.startswith("DRAPE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv(
        "DRAPE_CATALOG_S3_ENDPOINT", "https://AKIAEXAMPLE:wJalrXUtnFEMI@s3.local:9000"
    )
    monkeypatch.setenv("DRAPE_KAFKA_BOOTSTRAP_SERVERS", "drape:kafka-pw-123@127.0.0.1:9092")
    monkeypatch.setenv("DRAPE_CATALOG_S3_SECRET_KEY", "the-secret-key")
    monkeypatch.setenv("DRAPE_KAFKA_SASL_USERNAME", "drape")
    monkeypatch.setenv("DRAPE_KAFKA_SASL_PASSWORD", "sasl-password-xyz")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    for secret in (
        "wJalrXUtnFEMI",
        "AKIAEXAMPLE",
        "kafka-pw-123",
        "the-secret-key",
        "sasl-password-xyz",
    ):
        assert secret not in out
    assert "DRAPE_CATALOG_S3_ENDPOINT=https://***@s3.local:9000" in out
    assert "DRAPE_KAFKA_BOOTSTRAP_SERVERS=***@127.0.0.1:9092" in out


# ---------------------------------------------------------------------------- unknown variables


def test_unknown_variable_gets_a_did_you_mean():
    found = unknown_env(
        type(load_settings(env={})),
        {"DRAPE_MAX_CONCURENT_RPCS": "8", "DRAPE_GRPC_ADDRESS": "x", "DRAPE_ZZZ": "1", "HOME": "/"},
    )
    assert found == [("DRAPE_MAX_CONCURENT_RPCS", "DRAPE_MAX_CONCURRENT_RPCS"), ("DRAPE_ZZZ", "")]


def test_unknown_variable_is_a_warning_by_default(caplog):
    with caplog.at_level(logging.WARNING, logger="drape.config"):
        settings = load_settings(env={"DRAPE_TLS_CERT_FLE": "/etc/tls.crt"})
    assert settings.tls_cert_file == ""  # ignored, but said so
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "DRAPE_TLS_CERT_FLE" in m and "did you mean DRAPE_TLS_CERT_FILE" in m for m in messages
    )


@pytest.mark.parametrize("where", ["env", "file"])
def test_strict_env_refuses_to_start(where, tmp_path):
    env = {"DRAPE_AUTH_TOKEN_FILE": "/run/secrets/tokens"}
    if where == "env":
        env["DRAPE_STRICT_ENV"] = "true"
    else:
        conf = tmp_path / "drape.toml"
        conf.write_text("strict_env = true\n")
        env["DRAPE_CONFIG_FILE"] = str(conf)
    with pytest.raises(ConfigError) as err:
        load_settings(env=env)
    assert err.value.setting == "DRAPE_AUTH_TOKEN_FILE"
    assert "did you mean DRAPE_AUTH_TOKENS_FILE?" in str(err.value)


def test_known_variables_outside_settings_are_not_flagged():
    assert unknown_env(type(load_settings(env={})), {"DRAPE_CONFIG_FILE": "x"}) == []


# ---------------------------------------------------------------------------- a real start-up


def _run_server(env: dict[str, str], seconds: float) -> tuple[int, str]:
    """``drape serve media`` with ``env``; its exit status and log after SIGTERM."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DRAPE_")}
    full = {
        **base,
        "DRAPE_GRPC_ADDRESS": "127.0.0.1:0",
        "DRAPE_METRICS_PORT": "-1",
        "DRAPE_DRAIN_DELAY_SECONDS": "0",
        "DRAPE_LOG_FORMAT": "json",
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", "media"],
        cwd=ROOT,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Stopped with SIGTERM once it says it listens; killed if it hangs.
    watchdog = threading.Timer(seconds, proc.kill)
    watchdog.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if '"msg": "listening"' in line:
                proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        watchdog.cancel()
    out = "".join(lines)
    return proc.returncode, out


def test_startup_log_redacts_and_warns():
    code, log = _run_server(
        {
            "DRAPE_EXPERIMENTS_DB": "postgresql://drape:pg-pass-42@127.0.0.1:5432/experiments",
            "DRAPE_CATALOG_S3_ENDPOINT": "https://AKIAEXAMPLE:wJalrXUtnFEMI@127.0.0.1:9000",
            "DRAPE_MAX_CONCURENT_RPCS": "8",
        },
        seconds=60,
    )
    for secret in ("pg-pass-42", "wJalrXUtnFEMI", "AKIAEXAMPLE"):
        assert secret not in log
    assert "postgresql://***@127.0.0.1:5432/experiments" in log
    assert "DRAPE_MAX_CONCURENT_RPCS" in log and "DRAPE_MAX_CONCURRENT_RPCS" in log
    assert "gRPC without TLS" in log  # what is off is said at start-up
    assert code == 0


def test_startup_refused_when_strict():
    code, log = _run_server({"DRAPE_STRICT_ENV": "1", "DRAPE_GRPC_ADRESS": "x"}, seconds=60)
    assert code == 2
    assert "DRAPE_GRPC_ADRESS" in log and "did you mean DRAPE_GRPC_ADDRESS?" in log
