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
    #: Whether roles that can search stored reads or edit watch lists must use TOTP.
    #: Defaults to on in ``prod`` and off elsewhere.
    mfa_required: bool | None = None
    #: Marks cookies ``Secure``; on by default in ``prod``.
    cookie_secure: bool | None = None
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
