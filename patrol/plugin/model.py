"""The validated, frozen configuration model.

Produced by :func:`patrol.config.load_config` from the original JSON format (kebab-case
keys, unchanged) or the same structure in TOML. Everything here is already checked,
defaulted and clamped: the supervisor never re-validates. Attribute names are the
JSON keys in snake_case (``working-directory`` -> ``working_directory``).

Keys that Patrol adds to the original format are marked "(new)".
"""

from __future__ import annotations

import posixpath
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

# Bounds of the original Patrol (min, default, max); its ping-timeout clamp bug is fixed.
TICK_EVERY = (5, 15, 120)  # min, default, max seconds
HISTORY = (5, 100, 1000)
PING_TIMEOUT = (5, 30, 180)
HTTP_LISTEN_DEFAULT = "127.0.0.1:8421"
METRICS_LISTEN_DEFAULT = "127.0.0.1:9421"
UDP_LISTEN_DEFAULT = "127.0.0.1:1248"
ACTIONS = ("start", "status", "stop", "restart")


def default_of(cls: type, name: str) -> Any:
    """The default of a field of a config dataclass. (The per-item classes have
    ``__slots__``, thousands of them live at once, so ``AppConfig.stop_signal`` is a slot
    descriptor, not the default.)"""
    defaults = _DEFAULTS.get(cls)
    if defaults is None:
        defaults = _DEFAULTS[cls] = {f.name: f.default for f in fields(cls)}
    return defaults[name]


_DEFAULTS: dict[type, dict[str, Any]] = {}


@dataclass(frozen=True)
class Option:
    """A config key that a plugin adds to the apps or services that use it.

    A keepalive or service backend lists its options in ``options``; the config loader
    then accepts those keys on items using that method, checks their type, applies the
    default and stores the value in ``item.options[key]``. Unknown keys elsewhere are
    warned about as likely typos.
    """

    key: str
    type: type | tuple[type, ...]
    default: Any
    doc: str = ""
    #: Optional extra rule: returns an error message (without the key) or None.
    check: Callable[[Any], str | None] | None = None


@dataclass(frozen=True, slots=True)
class Backoff:
    """Restart backoff of an app (new keys ``backoff-*`` and ``start-limit``).

    An instance that stayed up at least ``reset`` seconds (1 s by default, like
    supervisor's ``startsecs`` and pm2's ``min_uptime``) counts as healthy: the next
    restart is immediate and the failure count starts again. A first quick failure is
    restarted at once too; the n-th quick failure in a row (n >= 2) waits
    ``min(base * factor**(n-2), max)`` seconds. With ``limit`` > 0, the app gives up
    after that many quick failures in a row (state "given-up", event ``app.gave_up``)
    until it is toggled; with 0 it keeps retrying every ``max`` seconds.
    """

    base: float = 0.1
    factor: float = 2.0
    max: float = 30.0
    reset: float = 1.0
    limit: int = 0


#: (new) what ``depends-on`` may wait for: the dependency runs, is ready, or its last run
#: (in this Patrol's life) ended, or ended with exit code 0
DEPENDENCY_CONDITIONS = ("started", "ready", "completed", "completed-successfully")
#: the condition of a dependency listed without one (``"depends-on": ["db"]``)
DEFAULT_CONDITION = "ready"


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """(new) ``readiness`` or ``liveness`` of an item: which probe, and how often.

    Kubernetes' semantics: the first check ``initial_delay`` s after the run began,
    then one every ``period`` s, each given ``timeout`` s; ``success_threshold``
    successes in a row make it pass, ``failure_threshold`` failures in a row make it fail.
    """

    probe: str  # the canonical name of the registered probe, e.g. "http"
    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3


@dataclass(frozen=True, slots=True)
class RunAs:
    """(new) ``user``/``group``: who an app runs as, resolved when the config is loaded
    (an unknown user is a config error, not a start failure)."""

    user: str  # the user's name (the uid as text when it has none)
    uid: int
    gid: int
    #: every group the process gets: the primary one and the user's supplementary groups
    groups: tuple[int, ...]
    home: str
    shell: str


#: (new) ``restart``: when an app that ended by itself is started again
RESTART_POLICIES = ("always", "on-failure", "never")
#: (new) ``restart-mode``: how a set of instances is restarted as a whole
RESTART_MODES = ("rolling", "parallel")
#: (new) ``limits``: resource limits by name -> the ``resource`` module's constant name
LIMIT_NAMES = {"nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "core": "RLIMIT_CORE", "as": "RLIMIT_AS",
               "memlock": "RLIMIT_MEMLOCK", "stack": "RLIMIT_STACK", "cpu": "RLIMIT_CPU",
               "fsize": "RLIMIT_FSIZE"}
#: a limit value meaning "no limit" (``RLIM_INFINITY``)
UNLIMITED = -1


@dataclass(frozen=True, slots=True)
class AppConfig:
    id: str
    keepalive: str  # canonical method name, e.g. "pid-patrol"
    name: str
    binary: str
    working_directory: str
    log_directory: str
    pid_path: str = ""
    pid_verify: bool = False
    disabled: bool = False
    keyvalue: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    keyvalue_clear: bool = False
    secret: str = ""
    execute_timeout: float = 0.0
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    env_parent: bool = False
    std_merge: bool = False
    x: Any = None
    # (new) stop and restart semantics
    stop_signal: int = 10  # SIGUSR1, as the original
    restart_signal: int = 12  # SIGUSR2
    stop_timeout: float = 10.0
    backoff: Backoff = field(default_factory=Backoff)
    #: (new) a log file never grows beyond this: it is renamed to ``<file>.1`` and a new one
    #: started (older generations shift to ``.2`` ...); 0 = never rotated
    log_max_bytes: int = 50 * 1024 * 1024
    #: (new) rotated generations kept per file (``.1`` .. ``.N``); 0 = none (a full file is deleted)
    log_max_files: int = 5
    #: (new) the most bytes the log files in the app's log directory may take together
    #: (current files never deleted); 0 = no limit. Default: 20 x log-max-bytes
    log_max_total_bytes: int = 20 * 50 * 1024 * 1024
    #: the config set ``log-max-total-bytes``: a budget for the whole directory (the
    #: smallest set among the apps sharing it applies); else the default is the app's
    #: share, and a shared directory's budget is the sum of its apps' shares
    log_max_total_bytes_set: bool = False
    #: (new) log files older than this many days are deleted (current files never); 0 = kept
    log_max_age_days: float = 0.0
    #: (new) rotated generations from ``.2`` on are gzip-compressed (``.1`` stays plain)
    log_compress: bool = False
    #: values of the keepalive plugin's own options
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: (new) probes: readiness decides ``ready``, liveness failing restarts the app
    readiness: ProbeSpec | None = None
    liveness: ProbeSpec | None = None
    #: (new) ``"app/ID"`` or ``"service/ID"`` -> condition (:data:`DEPENDENCY_CONDITIONS`):
    #: the app is started only once every one holds
    depends_on: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # (new) who and with what the app runs
    run_as: RunAs | None = None
    umask: int | None = None
    nice: int | None = None
    #: limit name (LIMIT_NAMES) -> (soft, hard), UNLIMITED for no limit; absent: Patrol's own
    limits: Mapping[str, tuple[int, int]] = field(default_factory=lambda: MappingProxyType({}))
    #: a dotenv file read at each start, merged before ``env``
    env_file: str = ""
    # (new) when the app is started again after it ended by itself
    restart: str = "always"
    success_exit_codes: frozenset[int] = frozenset({0})
    # (new) instances: a set of ``instances`` copies ``ID-0`` .. ``ID-(N-1)``; 0 = one app, not a set.
    # A copy's config has ``instance_of`` (the set's id) and ``instance`` (k); the number of
    # copies is not part of a copy's identity (a reload that only changes it touches no copy).
    instances: int = field(default=0, compare=False)
    instance_of: str = ""
    instance: int = 0
    restart_mode: str = "rolling"

    # Every part of Patrol finds the app's files through these three properties, never by
    # joining paths itself, so the rule below holds everywhere at once.

    @property
    def program(self) -> str:
        """The program Patrol executes: ``binary``, below ``working-directory`` when relative."""
        return resolve(self.working_directory, self.binary)

    @property
    def log_root(self) -> str:
        """The app's log directory: ``log-directory``, below ``working-directory`` when relative."""
        return resolve(self.working_directory, self.log_directory)

    @property
    def pid_file(self) -> str:
        """The pid file: ``pid-path``, below ``working-directory`` when relative ("" when unset)."""
        return joined(self.working_directory, self.pid_path) if self.pid_path else ""

    @property
    def env_file_path(self) -> str:
        """The env file: ``env-file``, below ``working-directory`` when relative ("" when unset)."""
        return joined(self.working_directory, self.env_file) if self.env_file else ""


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    id: str
    name: str
    service: str
    #: action -> canonical backend name
    management: Mapping[str, str]
    #: action -> the word passed to the backend (default: the action itself)
    parameters: Mapping[str, str]
    #: action -> exit codes that count as success
    ignore_exit_codes: Mapping[str, frozenset[int]]
    disabled: bool = False
    keyvalue: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    keyvalue_clear: bool = False
    secret: str = ""
    x: Any = None
    # (new)
    status_timeout: float = 30.0
    command_timeout: float = 180.0
    stop_on_shutdown: bool = False
    #: values of the backends' own options (e.g. ``initd-directory``)
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: (new) as for apps (services have no liveness: their status command is one)
    readiness: ProbeSpec | None = None
    depends_on: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class HttpAuth:
    """(new) ``http.auth``: the token every HTTP request needs (see SECURITY.md)."""

    token: str = field(repr=False)  # never in a repr, so never in a log line
    #: where the token came from, for messages: ``http.auth.token`` or the token file
    source: str = ""


@dataclass(frozen=True)
class Listen:
    """A listener's address and (HTTP and metrics listeners) who may use it."""

    listen: str
    x: Any = None
    #: (new, http only) None = no authentication: refused beyond loopback unless insecure_no_auth
    auth: HttpAuth | None = None
    #: (new, http only) serve beyond loopback without auth: a loud warning instead of an error
    insecure_no_auth: bool = False
    #: (new, http only) requests per second per client beyond loopback; 0 = no limit
    rate_limit: float = 100.0
    #: (new, http only) seconds a client may take to send a request (head and body), or
    #: stall reading an answer, before its connection is closed
    client_timeout: float = 10.0
    #: (new, http only) HTTP connections open at once, at most (fewer when descriptors are short)
    max_connections: int = 512
    #: (new, udp only) what UDP answers: "full", "pings-only" or "minimal"
    answer: str = "full"


@dataclass(frozen=True)
class PatrolConfig:
    apps: Mapping[str, AppConfig]
    services: Mapping[str, ServiceConfig]
    tick_every: float = TICK_EVERY[1]
    history: int = HISTORY[1]
    json_timestamp: str = ""
    ping_timeout: float = PING_TIMEOUT[1]
    listen_http: tuple[str, ...] = (HTTP_LISTEN_DEFAULT,)
    listen_udp: tuple[str, ...] = (UDP_LISTEN_DEFAULT,)
    http: Listen = field(default_factory=lambda: Listen(HTTP_LISTEN_DEFAULT))
    udp: Listen = field(default_factory=lambda: Listen(UDP_LISTEN_DEFAULT))
    x: Any = None
    #: (new) where persistent state lives; "" = beside the config file
    state_file: str = ""
    #: (new) the app whose own exit ends Patrol with its exit code (a container's main process)
    exit_with: str = ""
    #: (new) ``metrics``: a listener of its own for Prometheus (``/metrics`` only, its own
    #: token); None = none (``/metrics`` is still served beside the API, behind http.auth)
    metrics: Listen | None = None
    #: the file this was loaded from (for messages and relative defaults)
    source: Path | None = None


def clean(path: str) -> str:
    """Go's ``filepath.Clean``: like normpath, but a leading ``//`` collapses too."""
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def joined(base: str, path: str) -> str:
    """``path`` as given when absolute, else below ``base``; cleaned either way.

    The original joined every path under the working directory, absolute ones too:
    ``"binary": "/usr/bin/python3"`` ran ``<working-directory>/usr/bin/python3``, and an
    absolute log directory landed inside the working directory. An absolute path here
    means what it says.
    """
    return clean(path) if path.startswith("/") else clean(base + "/" + path)


def resolve(base: str, path: str) -> str:
    """:func:`joined`, interned: for the paths many items share and that are kept by what
    asked for them (the log directory by the log index and each instance, the program).

    Only for those: Python drops an interned string that nobody holds any more, and each
    drop leaves a dead slot in its table of interned strings until the table is rebuilt.
    Interning a path per app that is let go at once (checking each app's log directory
    while the config loads did) left a dead slot per app and load: the table, nearly full
    after Patrol's imports, doubled (+0.55 MB) between 500 and 1,000 apps, which read as
    1.1 KB per app.
    """
    return sys.intern(joined(base, path))
