"""The one validated settings object.

Settings are read from the environment (prefix ``ANWANG_``) or a ``.env`` file, built
once by :func:`anwang.app.create_app` or the CLI, and passed down. Nothing reads the
environment at import time. Every field is documented in ``docs/configuration.md``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The secret shipped for the demo. Refused outside ``ANWANG_ENV=dev``.
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"


class Environment(StrEnum):
    DEV = "dev"
    TEST = "test"
    PROD = "prod"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ANWANG_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    env: Environment = Environment.DEV
    data_dir: Path = Field(default=Path("var"))
    database_url: str | None = None
    bus_url: str = "memory://"
    #: JetStream stream that carries every ``anwang.>`` subject.
    nats_stream: str = "ANWANG"
    #: Seconds JetStream waits for a worker to acknowledge a message before giving it to
    #: another worker: how long the events a crashed worker held are delayed.
    nats_ack_wait_s: float = Field(default=30.0, ge=1, le=3600)
    secret_key: str = DEV_SECRET_KEY
    #: Default interface language; each user may choose their own.
    locale: str = "zh_CN"
    #: Basemap tile URL template (``{z}/{x}/{y}``); empty draws anwang's own layers only.
    tile_url: str = ""
    tile_attribution: str = ""
    session_idle_minutes: int = Field(default=30, ge=1)
    session_absolute_hours: int = Field(default=12, ge=1)
    login_max_failures: int = Field(default=5, ge=1)
    login_lock_minutes: int = Field(default=10, ge=1)
    #: Largest request body accepted, in bytes (a 10,000-read batch is about 3 MB).
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    #: ``POST /api/v1/reads`` requests one process handles at once; more get 503.
    ingest_max_in_flight: int = Field(default=16, ge=1, le=1024)
    #: Reads per second one device key may post to one process (0: no limit); more get
    #: 429. ``ingest_key_burst_reads`` is how many it may post at once.
    ingest_key_reads_per_s: float = Field(default=2000.0, ge=0)
    ingest_key_burst_reads: int = Field(default=20_000, ge=1)
    #: Stored-read events not yet published (outbox) or not yet handled by the storage
    #: consumer beyond which ingestion answers 503 until half of them are done (0: off).
    ingest_max_backlog: int = Field(default=2000, ge=0)
    #: Whether roles that can search stored reads or edit watch lists must use TOTP.
    #: Defaults to on in ``prod`` and off elsewhere.
    mfa_required: bool | None = None
    #: Marks cookies ``Secure``; on by default in ``prod``.
    cookie_secure: bool | None = None
    #: Reasons a search of stored plate reads may give (each search also needs a case
    #: reference). Set as a JSON list: ``ANWANG_READ_SEARCH_REASONS='["investigation"]'``.
    read_search_reasons: list[str] = Field(
        default_factory=lambda: [
            "investigation", "missing_person", "stolen_vehicle", "hit_and_run", "court_order",
        ],
        min_length=1,
    )
    #: Hours a plate read that matched no watch-list entry is kept (at most 30 days).
    read_retention_hours: int = Field(default=48, ge=1, le=30 * 24)
    #: Days a plate read with a watch-list hit is kept after the last alert it belongs
    #: to was closed (while one is open or acknowledged it is always kept).
    alert_retention_days: int = Field(default=365, ge=0, le=10 * 366)
    #: Seconds between rounds of the checkpoint housekeeping (offline scan and purge).
    housekeeping_interval_s: int = Field(default=60, ge=1)
    #: Minutes within which another hit of the same watch-list entry at the same
    #: checkpoint updates the open alert instead of raising a new one.
    alert_dedupe_minutes: int = Field(default=10, ge=0, le=24 * 60)
    #: Minutes an alert may stay unacknowledged before it is escalated a level up.
    alert_escalate_minutes: int = Field(default=2, ge=1, le=24 * 60)
    #: Seconds between two rounds of alert escalation and watch-list expiry.
    alert_scan_seconds: float = Field(default=15.0, gt=0, le=3600)
    #: Longest validity of a watch-list entry, in days (renewable).
    watchlist_max_days: int = Field(default=90, ge=1, le=366)
    #: MQTT broker the device intake subscribes to (``mqtt://user:pass@host:1883``,
    #: ``mqtts://`` for TLS); empty: no MQTT, devices post over HTTP only.
    mqtt_url: str = ""
    #: This worker's member name in the MQTT consumer group (client id
    #: ``anwang-communities-<worker id>``); empty: the host name. One per process.
    mqtt_worker_id: str = ""
    #: Seconds the broker keeps a stopped worker's session and its queued messages.
    mqtt_session_expiry_s: int = Field(default=24 * 3600, ge=60)
    #: Most unacknowledged messages the broker sends one worker at once (MQTT 5).
    mqtt_receive_maximum: int = Field(default=10_000, ge=1, le=65535)
    #: Hours device telemetry samples and device events are kept.
    device_retention_hours: int = Field(default=7 * 24, ge=1, le=366 * 24)
    #: Seconds a device's clock may run ahead of anwang's before its messages are refused.
    device_clock_skew_s: float = Field(default=30.0, ge=0, le=3600)
    #: Seconds between two offline scans (and escalation rounds) of community devices.
    device_scan_seconds: float = Field(default=2.0, gt=0, le=3600)
    demo_center_lat: float = Field(default=31.78, ge=-90, le=90)
    demo_center_lon: float = Field(default=119.95, ge=-180, le=180)
    demo_seed: int = 7

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.env is not Environment.DEV and self.secret_key == DEV_SECRET_KEY:
            raise ValueError(
                "ANWANG_SECRET_KEY is the shipped development default; "
                "set a secret of your own outside ANWANG_ENV=dev"
            )
        if len(self.secret_key) < 16:
            raise ValueError("ANWANG_SECRET_KEY must be at least 16 characters")
        if not (self.bus_url == "memory://" or self.bus_url.startswith(("nats://", "tls://"))):
            raise ValueError("ANWANG_BUS_URL must be memory:// or nats://host:port")
        if self.mqtt_url and not self.mqtt_url.startswith(("mqtt://", "mqtts://")):
            raise ValueError("ANWANG_MQTT_URL must be mqtt://host:1883 or mqtts://host:8883")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'anwang.db').resolve()}"

    @property
    def mfa_enforced(self) -> bool:
        if self.mfa_required is not None:
            return self.mfa_required
        return self.env is Environment.PROD

    @property
    def secure_cookies(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.env is Environment.PROD

    @property
    def signing_key_path(self) -> Path:
        """Where the Ed25519 key that signs audit checkpoints is kept."""
        return self.data_dir / "audit-signing-key.pem"
