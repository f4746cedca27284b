"""The one settings object. Nothing else in the project reads ``os.environ``.

Every value comes from an environment variable prefixed ``TAPESTRY_`` (or a ``.env`` file). The
defaults are the embedded ones: a SQLite database, kombu's SQLAlchemy broker transport on another
SQLite file, and a local artifact directory, all under one data directory.
"""

from __future__ import annotations

import math
import secrets
from collections import Counter
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.security.files import private_dir, restrict_new_files, tighten

KNOWN_BAD_SECRETS = frozenset(
    {"", "changeme", "change-me", "secret", "secret-key", "dev", "development", "test", "tapestry",
     "please-change", "insecure", "default"}
)
MIN_SECRET_LENGTH = 32
MIN_SECRET_BITS = 128
"""Least estimated entropy of a secret key (length x Shannon entropy of its characters): 40 x "a"
has 0 bits, a 64-character hex key about 250, ``secrets.token_urlsafe(48)`` about 350."""


class ConfigurationError(SystemExit):
    """A setting refused at start-up: the process stops with this one line (exit code 1)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAPESTRY_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("tapestry-data"), description="Where embedded state lives.")
    database_url: str = Field(
        default="", description="SQLAlchemy URL; default: SQLite in data_dir."
    )
    broker_url: str = Field(default="", description="Celery broker; default: SQLAlchemy transport.")
    result_backend_url: str = Field(
        default="",
        description="Celery results, used only by /predict; default: SQLite in data_dir.",
    )
    inference_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    artifact_dir: Path | None = Field(
        default=None, description="Model artifacts; default data_dir."
    )
    artifact_url: str = Field(
        default="",
        description="The artifact store as a URL (fsspec); default file://<artifact_dir>. Only a "
        "directory every host mounts is supported so far (see app/storage.py).",
    )
    keep_versions: int = Field(
        default=5,
        ge=0,
        description="Model versions kept per project (plus pinned ones and the current one); "
        "older versions' artifacts are deleted by the sweep, their rows kept. 0: keep all.",
    )
    artifact_sweep_seconds: float = Field(
        default=3600.0, ge=0, description="How often each worker sweeps artifacts; 0: never."
    )
    artifact_tmp_grace_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="Temporary and unclaimed artifact files younger than this are left alone.",
    )
    secret_key: str = Field(default="", description="Signs sessions; generated once when unset.")
    max_upload_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)
    max_text_chars: int = Field(default=20_000, ge=10)
    default_base_model: str = Field(default="minilm")
    lease_seconds: int = Field(default=15 * 60, ge=10)
    annotator_concurrency: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Annotator-view requests one web process works on at once; the rest wait "
        "their turn in arrival order. 0: 1 on SQLite (its writers take turns anyway), 2 on "
        "Postgres (overlaps the round trips); raise it for a database far away.",
    )
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    stale_run_seconds: float = Field(
        default=60.0,
        gt=0,
        description="No heartbeat for this long = dead (heartbeats come every heartbeat_seconds).",
    )
    max_run_attempts: int = Field(default=2, ge=1)
    visibility_timeout_seconds: int = Field(default=6 * 3600, ge=60)
    session_max_age_seconds: int = Field(default=14 * 24 * 3600, ge=60)
    cookie_secure: bool = Field(default=False, description="Set on HTTPS deployments.")
    write_rate_limit_per_minute: int = Field(default=600, ge=1)
    login_failures_per_account: int = Field(
        default=10, ge=1, description="Failed sign-ins per e-mail within the window, then 429."
    )
    login_failures_per_address: int = Field(
        default=30, ge=1, description="Failed sign-ins per client address within the window."
    )
    login_window_seconds: int = Field(default=15 * 60, ge=1)
    model_root: Path | None = Field(
        default=None,
        description="Local base-model folders must lie under it; default data_dir/models.",
    )
    web_maintenance: bool = Field(
        default=True,
        description="Run the stale-run reaper and the token-use writer in the web process, on "
        "their own schedule, whether or not any worker is alive.",
    )
    hf_offline: bool = Field(default=True, description="Never reach a model hub from workers.")
    live_head: bool = Field(
        default=True,
        description="Refit the live head (logistic regression on stored sentence embeddings) after "
        "every label and rebuild the queue from it between adapter rounds.",
    )
    live_embed_max_length: int = Field(default=128, ge=8, le=512)
    live_embed_windows: int = Field(
        default=1,
        ge=0,
        le=16,
        description="Windows of live_embed_max_length tokens the live head reads per text (the "
        "mean of their embeddings); 0 chooses per project from the pool's text lengths: 1 for "
        "short texts, up to 4 when three texts in four need them. 1 by default: on 20 "
        "Newsgroups and R8 more windows cost 2x the embedding time and did not pay "
        "(tests/benchmarks/results/few_labels.md).",
    )
    live_self_training: bool = Field(
        default=True,
        description="The live head adds confident pool items as pseudo-labels unless that "
        "loses on the dev set; they are never annotations, never exported, never in the budget. "
        "On by default: at 10 % of the pool it added +1.5 macro-F1 on R8, +1.0 on 20 "
        "Newsgroups, +0.6 on tweets' sentiment and -0.1 on spam e-mails to the live head with "
        "its TF-IDF half, for about 1.9x a refit's time (docs/results.md, issue 18).",
    )
    live_tfidf_pseudo_labels: int = Field(
        default=20_000,
        ge=0,
        le=1_000_000,
        description="With self-training and the TF-IDF half served, the TF-IDF half learns "
        "from the served mean's prediction on up to this many unlabelled pool items "
        "(class-balanced, most confident first) at half weight, where the embedding half "
        "takes as many as there are labels; 0 gives the TF-IDF half as many as there are "
        "labels too. Takes effect at the TF-IDF half's next refit (10 % more labels).",
    )
    live_hybrid: bool = Field(
        default=True,
        description="With a dev set and 40+ labels, the live head also fits a TF-IDF model of "
        "the project's own texts and serves the mean of both unless that loses to the "
        "embeddings alone by more than 0.01 macro-F1 on the dev set and the labels' "
        "out-of-fold predictions together (+1.1 macro-F1 on R8, +1.9 on 20 "
        "Newsgroups at 10 % of the pool, "
        "tests/benchmarks/results/few_labels.md); the TF-IDF model and its out-of-fold "
        "evidence are refitted when the labels grew by 10 %.",
    )
    adapter_growth_factor: float = Field(
        default=1.5,
        ge=1.0,
        description="On a CPU worker an adapter retrain starts only once the labels have grown by "
        "this factor since the last adapter version (a GPU worker retrains every batch).",
    )

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'tapestry.sqlite'}"
        self.database_url = normalise_database_url(self.database_url)
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.data_dir / 'broker.sqlite'}"
        if not self.result_backend_url:
            self.result_backend_url = f"db+sqlite:///{self.data_dir / 'results.sqlite'}"
        if self.annotator_concurrency == 0:
            self.annotator_concurrency = 1 if self.is_sqlite else 2
        if self.artifact_url:
            try:
                self.artifact_dir = check_artifact_url(self.artifact_url)
            except ArtifactUrlNotSupported as exc:
                raise ValueError(str(exc)) from None
        if self.artifact_dir is None:
            self.artifact_dir = self.data_dir / "artifacts"
        self.artifact_dir = self.artifact_dir.expanduser().resolve()
        self.artifact_url = self.artifact_dir.as_uri()
        if self.model_root is None:
            self.model_root = self.data_dir / "models"
        self.model_root = self.model_root.expanduser().resolve()
        if self.secret_key:
            check_secret(self.secret_key)
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def artifacts(self) -> Path:
        assert self.artifact_dir is not None  # set by _derive_defaults
        return self.artifact_dir

    @property
    def models(self) -> Path:
        assert self.model_root is not None  # set by _derive_defaults
        return self.model_root

    def ensure_dirs(self) -> None:
        """Create the data and artifact directories (0700); from now on this process creates
        files 0600, and the data directory's existing databases and key become 0600."""
        restrict_new_files()
        private_dir(self.data_dir)
        private_dir(self.artifacts)
        tighten(self.data_dir)

    def resolved_secret_key(self) -> str:
        """The configured secret, else one generated once and kept in the data directory."""
        if self.secret_key:
            return self.secret_key
        self.ensure_dirs()
        path = self.data_dir / "secret_key"
        if path.exists():
            key = path.read_text().strip()
            try:
                check_secret(key)
            except ValueError as exc:
                raise ConfigurationError(f"tapestry: {path} refused: {exc}") from None
            return key
        key = secrets.token_urlsafe(48)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(key)
        tmp.chmod(0o600)
        tmp.replace(path)
        return key


LOCAL_SCHEMES = ("", "file", "local")


class ArtifactUrlNotSupported(ValueError):
    pass


def check_artifact_url(url: str) -> Path:
    """The local directory a ``file://`` (or plain path) URL names; other schemes are refused."""
    parsed = urlparse(url)
    if parsed.scheme not in LOCAL_SCHEMES:
        raise ArtifactUrlNotSupported(
            f"TAPESTRY_ARTIFACT_URL={url!r}: only a shared directory (file://…) is supported so "
            "far: workers write and load artifacts as local files. Mount the object store as a "
            "directory on every host instead."
        )
    if parsed.scheme in ("file", "local"):
        return Path(parsed.netloc + parsed.path if parsed.netloc else parsed.path)
    return Path(url)


def check_secret(key: str) -> None:
    if key.strip().lower() in KNOWN_BAD_SECRETS:
        raise ValueError(
            "TAPESTRY_SECRET_KEY is a well-known placeholder; generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`."
        )
    if len(key) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"TAPESTRY_SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters long."
        )
    if secret_bits(key) < MIN_SECRET_BITS:
        raise ValueError(
            "TAPESTRY_SECRET_KEY is too predictable (repeated or few distinct characters); "
            "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`."
        )


def secret_bits(key: str) -> float:
    """Estimated entropy of ``key`` in bits: its length times the Shannon entropy per character."""
    counts = Counter(key)
    per_char = -sum(n / len(key) * math.log2(n / len(key)) for n in counts.values())
    return per_char * len(key)


def normalise_database_url(url: str) -> str:
    """Accept the DSN spellings people paste (postgres://, postgresql://) and use psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; a refused value stops start-up with one clear line."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(f"tapestry: configuration refused: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {message}" if where else message
