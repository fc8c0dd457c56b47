"""Settings, driven by environment variables (every one is listed in README.md).

Embedded defaults need no servers: SQLite, in-process caches, the in-memory channel
layer and the embedded job worker that `manage.py serve` starts. Setting `DATABASE_URL`
and `REDIS_URL` switches to the scale-out configuration (PostgreSQL, Redis cache and
channel layer, Celery workers). `LADDER_ENV=production` turns on the deployment checks.
"""
from __future__ import annotations

import os
import secrets
import sys
import warnings
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name, "")
    items = [item.strip() for item in value.replace(",", os.pathsep).split(os.pathsep)]
    return [item for item in items if item] or default


# --- Where state lives ------------------------------------------------------------------
LADDER_DATA_DIR = Path(os.environ.get("LADDER_DATA_DIR") or BASE_DIR / "var").resolve()
LADDER_ENV = os.environ.get("LADDER_ENV", "development")
PRODUCTION = LADDER_ENV == "production"
MEDIA_ROOT = LADDER_DATA_DIR / "media"
MEDIA_URL = "/media/"
# Uploads and converted images land here; it is always one of the slide roots.
LADDER_UPLOAD_DIR = LADDER_DATA_DIR / "slides"
LADDER_RUNS_DIR = LADDER_DATA_DIR / "runs"
LADDER_MODELS_DIR = LADDER_DATA_DIR / "models"
LADDER_DEMO_DIR = LADDER_DATA_DIR / "demo"
# Folders slides may be imported from by path; anything outside is refused.
LADDER_SLIDE_ROOTS = [
    Path(p).expanduser().resolve() for p in env_list("LADDER_SLIDE_ROOTS", [])
] + [LADDER_UPLOAD_DIR, LADDER_DEMO_DIR]
LADDER_MAX_UPLOAD_MB = int(os.environ.get("LADDER_MAX_UPLOAD_MB", "4096"))
# Plain images (JPEG/PNG/flat TIFF) converted at once per machine (each may take ~1 GB of memory).
LADDER_MAX_CONVERSIONS = int(os.environ.get("LADDER_MAX_CONVERSIONS", "1"))
# GeoJSON annotation imports: most features (and annotations) per import (beyond: 413), and the
# size above which the import runs as a job with progress instead of inside the request.
LADDER_GEOJSON_MAX_FEATURES = int(os.environ.get("LADDER_GEOJSON_MAX_FEATURES", "10000"))
LADDER_GEOJSON_SYNC_FEATURES = int(os.environ.get("LADDER_GEOJSON_SYNC_FEATURES", "500"))
LADDER_HOVERNET_WEIGHTS = os.environ.get("LADDER_HOVERNET_WEIGHTS", "")
# auto | nucleus-model | hovernet | classical (analysis/segmenters.py)
LADDER_SEGMENTER = os.environ.get("LADDER_SEGMENTER", "auto")
LADDER_NUCLEUS_WEIGHTS = os.environ.get("LADDER_NUCLEUS_WEIGHTS", "")  # "" = the shipped weights
# HER2 membrane thresholds: phantom | bci-provisional (analysis.core.her2.grading.HER2_THRESHOLD_SETS)
LADDER_HER2_THRESHOLDS = os.environ.get("LADDER_HER2_THRESHOLDS", "phantom")
LADDER_TORCH_DEVICE = os.environ.get("LADDER_TORCH_DEVICE", "auto")  # auto | cpu | cuda | cuda:1 ...
LADDER_NUCLEUS_RUNTIME = os.environ.get("LADDER_NUCLEUS_RUNTIME", "auto")  # auto | torch | torch-bf16 | onnxruntime (CPU)
LADDER_TILE_THREADS = int(os.environ.get("LADDER_TILE_THREADS", "8"))
LADDER_OPEN_SLIDES = int(os.environ.get("LADDER_OPEN_SLIDES", "32"))
LADDER_JPEG_QUALITY = int(os.environ.get("LADDER_JPEG_QUALITY", "80"))
LADDER_OVERLAY_RUNS = int(os.environ.get("LADDER_OVERLAY_RUNS", "4"))  # analysis runs kept in memory per process
LADDER_OVERLAY_MAX_RECORDS = int(os.environ.get("LADDER_OVERLAY_MAX_RECORDS", "500000"))  # per viewport answer
LADDER_OVERLAY_MAX_CONTOURS = int(os.environ.get("LADDER_OVERLAY_MAX_CONTOURS", "60000"))  # nuclei per outline answer
# A running job whose worker has not reported for this long is considered dead.
LADDER_JOB_HEARTBEAT_TIMEOUT = int(os.environ.get("LADDER_JOB_HEARTBEAT_TIMEOUT", "120"))
# Register a case's IHC onto its H&E automatically when the pair becomes complete (issue 17).
LADDER_AUTO_REGISTER = env_bool("LADDER_AUTO_REGISTER", True)
# A slide that becomes ready (with a known resolution) is analysed, and its case scored, unasked.
LADDER_AUTO_ANALYSE = env_bool("LADDER_AUTO_ANALYSE", True)

# --- Core Django ------------------------------------------------------------------------
DEBUG = env_bool("LADDER_DEBUG", False)


def _secret_key() -> str:
    key = os.environ.get("LADDER_SECRET_KEY", "")
    if key:
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("LADDER_SECRET_KEY must be set when LADDER_ENV=production.")
    # Development: a random key kept under the data dir, so sessions survive restarts.
    key_file = LADDER_DATA_DIR / "secret_key"
    try:
        return key_file.read_text().strip()
    except FileNotFoundError:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        key_file.write_text(key)
        key_file.chmod(0o600)
        return key


SECRET_KEY = _secret_key()
if PRODUCTION:
    if DEBUG:
        raise ImproperlyConfigured("LADDER_DEBUG must be off when LADDER_ENV=production.")
    if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure") or "change-me" in SECRET_KEY:
        raise ImproperlyConfigured("LADDER_SECRET_KEY is a default or too short (50+ characters).")

ALLOWED_HOSTS = env_list("LADDER_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("LADDER_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from static/ (no CDN)
    "channels",
    "cases",
    "viewer",
    "viewer.review",
    "viewer.board",
    "analysis",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "viewer.middleware.SecurityHeadersMiddleware",
    "viewer.middleware.LoginRequiredEverywhereMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "viewer.context_processors.roles",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------
if os.environ.get("DATABASE_URL"):
    # conn_max_age 0: under ASGI every request runs its sync code on a thread of its own, so
    # persistent connections would pile up (Django docs: use pooling, not CONN_MAX_AGE, with ASGI).
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=0)}
    # A pool per process (Django 5.1+, psycopg_pool) instead: requests borrow a connection and
    # give it back. Not in Celery's processes: prefork children would inherit the parent's pool,
    # sockets and dead pool threads included, so workers connect per task as before.
    _pool_max = int(os.environ.get("LADDER_DB_POOL_MAX", "20"))
    _program = Path(sys.argv[0])  # the `celery` script, or celery/__main__.py under `python -m celery`
    _in_celery = _program.name == "celery" or (_program.name == "__main__.py" and _program.parent.name == "celery")
    if _pool_max > 0 and not _in_celery and DATABASES["default"]["ENGINE"].endswith("postgresql"):
        # Django then passes psycopg_pool's check: a connection that died (PostgreSQL restarted)
        # is replaced instead of handed out.
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": min(2, _pool_max), "max_size": _pool_max,
            # a request waits this long for a free connection, then fails with a clear error
            "timeout": float(os.environ.get("LADDER_DB_POOL_TIMEOUT", "10")),
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": Path(os.environ.get("LADDER_DB_PATH") or LADDER_DATA_DIR / "db.sqlite3"),
            # WAL lets the web process read while the worker writes; wait instead of failing.
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # A file, not memory, so that worker and server processes started by tests share it.
            "TEST": {"NAME": str(LADDER_DATA_DIR / "test-db.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, channel layer, jobs -----------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                    "KEY_PREFIX": "ladder"},
        "tiles": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                  "KEY_PREFIX": "ladder-tiles", "TIMEOUT": 7 * 24 * 3600},
    }
    # channels_redis waits for messages with a blocking BZPOPMIN of 5 s; redis-py 8 reads with a
    # 5 s socket timeout by default, which tears every idle websocket down (channels_redis#422).
    # A longer read timeout keeps them, and still notices a dead server.
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                    "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}]}}
    }
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "ladder"},
        # Tiles are ~10-30 kB each: 20,000 entries is a few hundred MB at most.
        "tiles": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "ladder-tiles",
                  "TIMEOUT": None, "OPTIONS": {"MAX_ENTRIES": int(os.environ.get("LADDER_TILE_CACHE_ENTRIES", "20000"))}},
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# "embedded": jobs run in the worker process that `manage.py serve` starts (or `manage.py worker`).
# "celery": jobs are sent to Celery workers on Redis (`celery -A config worker`).
LADDER_JOB_BACKEND = os.environ.get("LADDER_JOB_BACKEND") or ("celery" if REDIS_URL else "embedded")
if LADDER_JOB_BACKEND not in {"embedded", "celery"}:
    raise ImproperlyConfigured("LADDER_JOB_BACKEND must be 'embedded' or 'celery'.")
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "ladder"
# Queue of cell-analysis jobs: "gpu" when a GPU worker with HoVer-Net weights consumes it.
LADDER_ANALYSIS_QUEUE = os.environ.get("LADDER_ANALYSIS_QUEUE", CELERY_TASK_DEFAULT_QUEUE)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Auth -------------------------------------------------------------------------------
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Sessions in the database: they survive a cache (Redis) restart; the tile fast path caches
# its session checks in-process anyway.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# Failed logins per username+address before a lock-out, and its length.
LADDER_LOGIN_MAX_FAILURES = int(os.environ.get("LADDER_LOGIN_MAX_FAILURES", "5"))
LADDER_LOGIN_LOCKOUT_SECONDS = int(os.environ.get("LADDER_LOGIN_LOCKOUT_SECONDS", "300"))
# The throttle is the first backend, so every login form (ours, /admin/login/) goes through it.
AUTHENTICATION_BACKENDS = [
    "viewer.accounts.backends.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so that anonymous API calls get 401 with a WWW-Authenticate header.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Strict JSON: no NaN/Infinity, at most 64 levels deep (viewer/api/parsers.py).
    "DEFAULT_PARSER_CLASSES": ["viewer.api.parsers.StrictJSONParser", "rest_framework.parsers.FormParser",
                               "rest_framework.parsers.MultiPartParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "viewer.api.pagination.BoundedLimitOffsetPagination",  # limit <= 1000
    "PAGE_SIZE": 100,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "HER2-LADDER viewer API",
    "DESCRIPTION": "Cases, slides, tiles and analyses of the HER2-LADDER pathologist viewer.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Every operation documents its 4xx answers (viewer/api/schema.py).
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "viewer.api.schema.add_error_responses"],
    "ENUM_NAME_OVERRIDES": {
        "ReceptorStatusEnum": "cases.models.Status",
        "CaseStatusEnum": "cases.models.CaseStatus",
        "SlideStatusEnum": "cases.models.SlideStatus",
        "JobStatusEnum": "analysis.models.JobStatus",
        "Her2ScoreEnum": "cases.models.Her2Score",
        "FeatureTypeEnum": ["Feature"],
        "HealthStatusEnum": ["ok", "warn", "fail"],
    },
}

# --- Static files -----------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = LADDER_DATA_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = True  # serve straight from static/ without collectstatic in development
WHITENOISE_AUTOREFRESH = DEBUG  # development: an edited script is served without a restart
# STATIC_ROOT only exists after collectstatic; with the finders above that is fine.
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = None

# --- Security ---------------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Everything is served from this origin: no CDN, so the policy can be strict.
LADDER_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-eval'; connect-src 'self' ws: wss:; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("LADDER_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("LADDER_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

LANGUAGE_CODE = "en-gb"
# Times on pages and in board records are shown in this zone (an IANA name, e.g. Europe/London).
TIME_ZONE = os.environ.get("LADDER_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LADDER_LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "WARNING"}, "daphne": {"level": "WARNING"}},
}
