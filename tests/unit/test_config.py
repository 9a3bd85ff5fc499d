"""Unit tests of components.core.settings: every setting, its default and its error."""

import os
import stat

import pytest

from components.core.settings import ConfigError, load_settings, read_secret

SECRET = "k" * 40


def test_defaults(tmp_path):
    s = load_settings(tmp_path, {"DEPTCAST_JWT_SECRET": SECRET})
    assert s.jwt_secret == SECRET
    assert s.db == str(tmp_path.resolve() / "deptcast.sqlite3") and not s.db_is_postgres
    assert (s.dev, s.max_message_bytes, s.history_limit, s.rate, s.burst) == (False, 65536, 200, 20.0, 50)
    assert (s.legacy_key_pattern, s.legacy_open) == ("{dept}_{user}", False)


def test_overrides(tmp_path):
    s = load_settings(tmp_path, {
        "DEPTCAST_JWT_SECRET": SECRET, "DEPTCAST_DB": "postgresql://u@h/db", "DEPTCAST_MAX_MESSAGE_BYTES": "10",
        "DEPTCAST_HISTORY_LIMIT": "5", "DEPTCAST_RATE": "0.5", "DEPTCAST_BURST": "2", "DEPTCAST_NODE": "n1",
        "DEPTCAST_LEGACY_KEY_PATTERN": "{user}@{dept}", "DEPTCAST_LEGACY_OPEN": "yes"})
    assert s.db_is_postgres and s.max_message_bytes == 10 and s.history_limit == 5
    assert (s.rate, s.burst, s.node_name) == (0.5, 2, "n1")
    assert (s.legacy_key_pattern, s.legacy_open) == ("{user}@{dept}", True)


@pytest.mark.parametrize("env, words", [
    ({"DEPTCAST_MAX_MESSAGE_BYTES": "big"}, "DEPTCAST_MAX_MESSAGE_BYTES"),
    ({"DEPTCAST_MAX_MESSAGE_BYTES": "0"}, "at least 1"),
    ({"DEPTCAST_RATE": "-1"}, "DEPTCAST_RATE"),
    ({"DEPTCAST_LEGACY_OPEN": "maybe"}, "DEPTCAST_LEGACY_OPEN"),
    ({"DEPTCAST_LEGACY_KEY_PATTERN": "{dept}"}, "{user}"),
    ({"DEPTCAST_JWT_SECRET": "short"}, "32 bytes"),
])
def test_bad_values_name_the_setting(tmp_path, env, words):
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, {"DEPTCAST_JWT_SECRET": SECRET, **env})
    assert words in str(info.value)


def test_no_secret_outside_dev_mode_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, {})
    assert "DEPTCAST_JWT_SECRET" in str(info.value)
    assert not (tmp_path / "jwt.secret").exists()


def test_dev_mode_generates_the_secret_once(tmp_path):
    first = load_settings(tmp_path, {"DEPTCAST_DEV": "1"})
    path = tmp_path / "jwt.secret"
    assert len(first.jwt_secret) >= 32 and path.read_text().strip() == first.jwt_secret
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_settings(tmp_path, {"DEPTCAST_DEV": "1"})
    assert again.jwt_secret == first.jwt_secret
    # the CLI reads the same file without creating anything
    assert read_secret(tmp_path, {}) == first.jwt_secret


def test_environment_secret_wins_over_file(tmp_path):
    (tmp_path / "jwt.secret").write_text("f" * 40)
    assert read_secret(tmp_path, {"DEPTCAST_JWT_SECRET": SECRET}) == SECRET
