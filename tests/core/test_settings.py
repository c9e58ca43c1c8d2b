from pathlib import Path

import pytest

from mailer.core.errors import ConfigError
from mailer.core.settings import load_settings


def test_seed_limits_have_seed_names_and_defaults() -> None:
    settings = load_settings()
    assert settings.max_campaign_recipients == 10_000
    assert settings.throttle_campaign_start_per_hour == 10
    assert settings.throttle_test_email_per_hour == 5
    assert settings.circuit_breaker_threshold == 10
    assert settings.transient_retry_delay_minutes == 5
    assert (settings.working_hours_start, settings.working_hours_end) == (9, 18)
    assert settings.rate_per_hour == 100
    assert settings.timezone == "Europe/Moscow"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILER_CIRCUIT_BREAKER_THRESHOLD", "3")
    assert load_settings().circuit_breaker_threshold == 3


def test_the_retry_delay_takes_fractions_of_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rehearsal (the chaos report) waits seconds, not the seed's minutes."""
    monkeypatch.setenv("MAILER_TRANSIENT_RETRY_DELAY_MINUTES", "0.05")
    assert load_settings().transient_retry_delay_minutes == 0.05


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MAILER_RATE_PER_HOUR", "abc", "MAILER_RATE_PER_HOUR: Input should be a valid integer"),
        ("MAILER_RATE_PER_HOUR", "0", "MAILER_RATE_PER_HOUR: Input should be greater than"),
        (
            "MAILER_TRANSIENT_RETRY_DELAY_MINUTES",
            "0",
            "MAILER_TRANSIENT_RETRY_DELAY_MINUTES: Input should be greater than 0",
        ),
        ("MAILER_TIMEZONE", "Mars/Olympus", "MAILER_TIMEZONE: unknown time zone 'Mars/Olympus'"),
        ("MAILER_DATABASE_URL", "mysql://x", "MAILER_DATABASE_URL: expected a postgresql://"),
        ("MAILER_WORKING_HOURS_START", "25", "MAILER_WORKING_HOURS_START: Input should be less"),
        (
            "MAILER_MAX_CACHED_WORKFLOWS",
            "-1",
            "MAILER_MAX_CACHED_WORKFLOWS: Input should be greater than or equal to 0",
        ),
        ("MAILER_WORKFLOW_SANDBOX", "maybe", "MAILER_WORKFLOW_SANDBOX: Input should be a valid"),
    ],
)
def test_wrong_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(expected)


def test_working_hours_out_of_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILER_WORKING_HOURS_START", "18")
    monkeypatch.setenv("MAILER_WORKING_HOURS_END", "9")
    with pytest.raises(ConfigError, match=r"MAILER_WORKING_HOURS_START \(18\) must be before"):
        load_settings()


def test_env_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env_file = tmp_path / "mailer.env"
    env_file.write_text("MAILER_RATE_PER_HOUR=42\n")
    monkeypatch.setenv("MAILER_ENV_FILES", str(env_file))
    assert load_settings().rate_per_hour == 42


def test_a_settings_error_never_prints_a_urls_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILER_REDIS_URL", "http://mailer:s3cret-pw@redis.internal:6379/0")
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert "MAILER_REDIS_URL" in message and "mailer:***@redis.internal" in message
    assert "s3cret-pw" not in message


def test_the_stacks_env_file_is_found_from_anywhere_inside_the_checkout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".data").mkdir()
    (tmp_path / ".data" / "mailer.env").write_text("MAILER_RATE_PER_HOUR=77\n")
    deep = tmp_path / "docs" / "drafts"
    deep.mkdir(parents=True)
    monkeypatch.delenv("MAILER_ENV_FILES", raising=False)
    monkeypatch.chdir(deep)
    assert load_settings().rate_per_hour == 77


def test_urls_with_passwords_are_secrets() -> None:
    settings = load_settings(
        database_url="postgresql://mailer:db-pw@db:5432/mailer", redis_url="redis://:r-pw@r:6379/0"
    )
    assert "db-pw" not in repr(settings) and "r-pw" not in repr(settings)
    assert settings.sqlalchemy_url == "postgresql+psycopg://mailer:db-pw@db:5432/mailer"
    assert settings.redis_connection_url == "redis://:r-pw@r:6379/0"


def test_a_return_path_must_be_an_ascii_mailbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILER_RETURN_PATH", "bounces@mail.example.ru")
    assert load_settings().return_path == "bounces@mail.example.ru"
    for bad in ("bounces", "отказы@почта.рф", "a b@example.ru"):
        monkeypatch.setenv("MAILER_RETURN_PATH", bad)
        with pytest.raises(ConfigError, match=r"^MAILER_RETURN_PATH: .*ASCII mailbox"):
            load_settings()
