"""Typed configuration: defaults, file and environment precedence, validation naming the
setting, redaction, and the README table kept in step with the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.common.config import MiB, Settings, load_settings
from services.common.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults():
    s = load_settings(env={})
    assert s.max_message_bytes >= 32 * MiB
    assert s.grpc_address == "[::]:50051" and s.log_format == "json"


def test_environment_overrides_file(tmp_path):
    f = tmp_path / "drape.toml"
    f.write_text('max_concurrent_rpcs = 9\nlog_level = "DEBUG"\nmetrics_variants = ["a", "b"]\n')
    s = load_settings(env={"DRAPE_CONFIG_FILE": str(f), "DRAPE_LOG_LEVEL": "warning"})
    assert s.max_concurrent_rpcs == 9
    assert s.log_level == "WARNING"  # env wins, level names are case-insensitive
    assert s.metrics_variants == ("a", "b")
    s = load_settings(env={"DRAPE_METRICS_VARIANTS": "control, treatment ,"})
    assert s.metrics_variants == ("control", "treatment")


@pytest.mark.parametrize(
    "env, setting, words",
    [
        (
            {"DRAPE_MAX_CONCURRENT_RPCS": "lots"},
            "DRAPE_MAX_CONCURRENT_RPCS",
            "invalid value 'lots'",
        ),
        ({"DRAPE_MAX_CONCURRENT_RPCS": "0"}, "DRAPE_MAX_CONCURRENT_RPCS", ">= 1"),
        ({"DRAPE_METRICS_PORT": "70000"}, "DRAPE_METRICS_PORT", "<= 65535"),
        ({"DRAPE_LOG_FORMAT": "xml"}, "DRAPE_LOG_FORMAT", "one of json, text"),
        ({"DRAPE_GRACE_PERIOD_SECONDS": "nan"}, "DRAPE_GRACE_PERIOD_SECONDS", "finite"),
        (
            {"DRAPE_MAX_MESSAGE_BYTES": str(2 * MiB), "DRAPE_MAX_IMAGE_BYTES": str(4 * MiB)},
            "DRAPE_MAX_IMAGE_BYTES",
            "exceeds",
        ),
        ({"DRAPE_KAFKA_SASL_USERNAME": "svc"}, "DRAPE_KAFKA_SASL_PASSWORD", "required"),
    ],
)
def test_bad_values_name_the_setting(env, setting, words):
    with pytest.raises(ConfigError) as ei:
        load_settings(env=env)
    assert ei.value.setting.startswith(setting)
    assert words in str(ei.value)


def test_bad_config_file(tmp_path):
    f = tmp_path / "drape.toml"
    f.write_text("max_concurent_rpcs = 3\n")  # typo
    with pytest.raises(ConfigError, match="unknown settings: max_concurent_rpcs"):
        load_settings(env={"DRAPE_CONFIG_FILE": str(f)})
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(env={"DRAPE_CONFIG_FILE": str(tmp_path / "missing.toml")})
    f.write_text("max_concurrent_rpcs = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(env={"DRAPE_CONFIG_FILE": str(f)})


def test_secrets_are_redacted():
    s = load_settings(
        env={"DRAPE_KAFKA_SASL_USERNAME": "svc", "DRAPE_KAFKA_SASL_PASSWORD": "s3cr3t"}
    )
    shown = s.redacted()
    assert shown["DRAPE_KAFKA_SASL_PASSWORD"] == "***"
    assert "s3cr3t" not in repr(shown)


def test_bad_setting_stops_the_process_with_a_message():
    env = {"PATH": "/usr/bin:/bin", "DRAPE_MAX_CONCURRENT_RPCS": "-3"}
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "DRAPE_MAX_CONCURRENT_RPCS" in proc.stderr and "Traceback" not in proc.stderr


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    missing = [env for _name, env, _d, _h in Settings.describe() if f"`{env}`" not in readme]
    assert not missing, (
        f"README.md configuration table lacks {missing}; run `drape config --markdown`"
    )


@pytest.mark.parametrize("address", ["127.0.0.1:70000", "bogus", "host:", "[::1:50051", ":50051"])
def test_bad_grpc_address_names_the_setting(address):
    with pytest.raises(ConfigError) as ei:
        load_settings(env={"DRAPE_GRPC_ADDRESS": address})
    assert ei.value.setting == "DRAPE_GRPC_ADDRESS"


def test_unbindable_address_and_port_in_use_stop_with_the_setting_named():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for env, setting in [
            ({"DRAPE_GRPC_ADDRESS": "bogus.invalid:50051"}, "DRAPE_GRPC_ADDRESS"),
            (
                {"DRAPE_GRPC_ADDRESS": "127.0.0.1:0", "DRAPE_METRICS_PORT": str(port)},
                "DRAPE_METRICS_PORT",
            ),
        ]:
            proc = subprocess.run(
                [sys.executable, "-m", "services.cli", "serve"],
                env={"PATH": "/usr/bin:/bin", **env},
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert proc.returncode == 2, proc.stderr
            assert setting in proc.stderr and "Traceback" not in proc.stderr
