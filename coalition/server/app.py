"""Assembling the server: store, service, routes, static web page, discovery and the
periodic work that runs under a database lease (one server at a time does it)."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import cherrypy
from cherrypy.process.plugins import Monitor

from ..config import ServerSettings
from ..failures import FailurePolicy, parse_rules
from ..joblogs import DbLogs, JobLogs, LogStore
from ..notify import MailSettings, Notifier
from ..store.base import Store, StoreError
from ..usecases import Context, Settings, UseCases
from ..usecases.limits import LimitConfig, Limits
from ..webhooks import WebhookSender, WebhookSettings
from . import openapi
from .api import Api
from .auth import Auth, LdapAuth, build_auth
from .discovery import DiscoveryResponder
from .http import error_page
from .legacy import LegacyApi
from .limits import LimitsApi
from .login import LoginApi, unavailable_page, web_gate
from .metrics import ServerMetrics
from .openjd import OpenJDApi
from .router import Mount, Router
from .wake import Waker
from .workers import WorkerApi

log = logging.getLogger("coalition.server")

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def find_web_dir(configured: str) -> str | None:
    """The static page: the configured dir, the package's own web/ (wheel, checkout), or the Debian path."""
    for path in (configured, os.path.join(_PACKAGE_DIR, "web"), "/usr/share/coalition/web"):
        if path and os.path.isfile(os.path.join(path, "index.html")):
            return os.path.abspath(path)
    return None


def failure_policy(s: ServerSettings) -> FailurePolicy:
    """The farm's failure settings, from `[server]` (validated by config.py)."""
    return FailurePolicy(
        hostfails=s.hostfails,
        blockscope=s.blockscope,
        forgive=s.forgive,
        sickjobs=s.sickjobs,
        sickwindow=s.sickwindow,
        stalltimeout=s.stalltimeout,
        minruntime=s.minruntime,
        rules=parse_rules(s.logrules, where="[server] logrules"),
    )


class ServerApp:
    """One Coalition server process."""

    def __init__(
        self,
        settings: ServerSettings,
        store: Store,
        clock: Callable[[], float] = time.time,
        auth: Auth | None = None,
    ):
        self.settings = settings
        self.store = store
        self.clock = clock
        cap = settings.maxlogsize * 1024 * 1024
        files = JobLogs(settings.logs_dir, cap)
        # Several servers on one database read and append the same logs (docs/deploy.md).
        self.logs: LogStore = DbLogs(store, cap, legacy=files) if settings.logs_in_database else files
        self.ctx = Context(
            store,
            self.logs,
            Settings(
                worker_timeout=settings.timeout,
                requeue_limit=settings.requeuelimit,
                sync_rate=settings.syncrate,
                decrease_priority_after=settings.decreasepriorityafter,
                event_retention_days=settings.eventretention,
                failures=failure_policy(settings),
                sick_mail=tuple(a.strip() for a in settings.sickmail.split(",") if a.strip()),
                fair_share=settings.fairshare_weights if settings.fairshare == "user" else None,
            ),
            clock,
        )
        self.uc = UseCases.over(self.ctx)
        self.limits = Limits(self.ctx, [LimitConfig(*entry) for entry in settings.limits])
        self.metrics = ServerMetrics(f"{socket.gethostname()}:{settings.port}", self.uc.reads.farm_counts)
        self.ctx.on_db_time = self.metrics.db_time
        self.ctx.on_pick = self.metrics.picked
        self.auth: Auth = auth or build_auth(settings, self.ctx, _remote_ip)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.discovery: DiscoveryResponder | None = None
        self.waker = Waker()  # wakes idle workers when an operator's change may bring work
        self.terminate: Callable[[list[str]], None] | None = None
        self.periodic: list[tuple[str, float, Callable[[], Any]]] = []
        self._last_purge = 0.0
        mail = MailSettings.from_server(settings)
        self.notifier: Notifier | None = None
        if mail.enabled:
            self.notifier = Notifier(mail, store, clock)
            self.ctx.on_transition.append(self.notifier.on_transition)
            self.add_periodic("notifier", mail.interval, self.notifier.drain)
        hooks = WebhookSettings(settings.webhooks, settings.webhooksecret, settings.notifyinterval)
        self.webhooks: WebhookSender | None = None
        if hooks.enabled:
            self.webhooks = WebhookSender(hooks, store, clock)
            self.ctx.on_transition.append(self.webhooks.on_transition)
            self.ctx.on_worker_lost.append(self.webhooks.on_worker_lost)
            self.ctx.on_event.append(self.webhooks.queue)
            self.add_periodic("webhooks", hooks.interval, self.webhooks.drain)
        if any(c.command for c in self.limits.configured.values()):
            # Licences used outside the farm: one server counts them, under a lease.
            self.add_periodic("limits", settings.limitsinterval, self.limits.refresh)
        if isinstance(self.auth, LdapAuth):
            self.add_periodic("sessions", 300.0, self.auth.sessions.purge)
            self.add_periodic("loginfailures", 300.0, self.auth.failures.purge)

    # -- assembly ---------------------------------------------------------------------------
    def build_router(self) -> Router:
        """The router of every route but the worker protocol's (see worker_api)."""
        api = Api(
            self.uc,
            self.auth,
            terminate=self._terminate,
            servermode=self.settings.servermode,
            metrics=self.metrics.render,
        )
        router = Router()
        router.on_change = self.waker.poke
        router.add("GET", "/api/openapi.json", lambda params: openapi.spec())
        api.routes(router, "/api")
        api.routes(router, "/api/webfrontend")
        limits = LimitsApi(self.limits, self.auth, api.who, api.actor, api._viewable)
        limits.routes(router, "/api")
        limits.routes(router, "/api/webfrontend")
        openjd = OpenJDApi(self.uc, self.auth, api.who, api.actor, api.parent_guard)
        openjd.routes(router, "/api")
        openjd.routes(router, "/api/webfrontend")
        legacy = LegacyApi(self.uc, self.auth)
        legacy.routes(router, "/json")
        legacy.routes(router, "/xmlrpc")
        login = LoginApi(self.auth, secure_cookie=bool(self.settings.ssl_certificate))
        login.routes(router, "/api")
        login.routes(router, "/api/webfrontend")
        router.add("GET", "/metrics", api.metrics)
        return router

    def worker_api(self) -> WorkerApi:
        """The worker protocol's handlers (a WSGI app of its own, mounted at /workers)."""
        return WorkerApi(
            self.uc.workers, self.settings.workertoken, self.metrics, self.uc.openjd.job, self.waker
        )

    def mount(self) -> None:
        """Mount every route and the static page on cherrypy.tree."""
        router = self.build_router()
        # We read bodies ourselves: curl's default form content type must not turn a JSON
        # body into form fields, and DELETE carries a body here.
        raw = {
            "/": {
                "request.process_request_body": False,
                "request.methods_with_bodies": ("POST", "PUT", "PATCH", "DELETE"),
            }
        }
        # The worker protocol, the farm's hot path, is a plain WSGI application (wsgi.py).
        workers = self.worker_api()
        cherrypy.tree.graft(workers.app(self.settings.maxbodysize * 1024 * 1024), "/workers")
        for prefix in ("/api", "/json", "/xmlrpc"):
            cherrypy.tree.mount(Mount(router, prefix), prefix, raw)
        # /metrics itself is the resource (scrapers ask for it exactly): no trailing-slash redirect.
        cherrypy.tree.mount(
            Mount(router, "/metrics"), "/metrics", {"/": {**raw["/"], "tools.trailing_slash.on": False}}
        )
        web = find_web_dir(self.settings.webdir)
        page: dict[str, Any] = {
            "tools.response_headers.on": True,
            "tools.response_headers.headers": [
                ("X-Frame-Options", "DENY"),
                ("X-Content-Type-Options", "nosniff"),
                ("Referrer-Policy", "same-origin"),
            ],
        }
        if self.auth.login_required:  # the page, too, is for logged-in users only
            cherrypy.tools.coalition_login = web_gate(self.auth)
            page["tools.coalition_login.on"] = True
            page["error_page.503"] = unavailable_page
        if web:
            page.update(
                {
                    "tools.staticdir.on": True,
                    "tools.staticdir.dir": web,
                    "tools.staticdir.index": "index.html",
                }
            )
            cherrypy.tree.mount(None, "/", {"/": page})
        else:
            cherrypy.tree.mount(_NoWeb(), "/", {"/": page})

    def _terminate(self, names: list[str]) -> None:
        if self.terminate is None:
            from .http import ApiError

            raise ApiError(
                404, "terminateworkers is only available in cloud mode (servermode = aws or gcloud)"
            )
        self.terminate(names)

    def configure(self) -> None:
        """Global CherryPy settings from the ini."""
        s = self.settings
        conf: dict[str, Any] = {
            "server.socket_host": s.listen,
            "server.socket_port": s.port,
            "server.thread_pool": s.threads,
            "server.socket_queue_size": 1024,
            "server.max_request_body_size": 0,  # checked by http.read_body, to answer in JSON
            "coalition.max_body": s.maxbodysize * 1024 * 1024,
            "engine.autoreload.on": False,
            "checker.on": False,
            "log.screen": s.verbose,
            "log.access_file": "",
            "request.show_tracebacks": False,
            "error_page.default": error_page,
            "tools.sessions.on": False,
        }
        if s.ssl_certificate and s.ssl_private_key:
            conf.update(
                {
                    "server.ssl_module": "builtin",
                    "server.ssl_certificate": s.ssl_certificate,
                    "server.ssl_private_key": s.ssl_private_key,
                }
            )
        cherrypy.config.update(conf)
        if not s.verbose:
            cherrypy.log.access_log.propagate = False
            cherrypy.log.error_log.propagate = False
            # CherryPy formats an access line for every request even with nowhere to write
            # it; on the worker protocol's hot path that is measurable work for nothing.
            cherrypy.log.access = lambda: None

    def add_periodic(self, name: str, interval: float, fn: Callable[[], Any]) -> None:
        """Run `fn` every `interval` seconds on the server that holds the lease `name`."""
        self.periodic.append((name, interval, fn))

    def _subscribe_monitors(self) -> None:
        self.add_periodic("reaper", self.settings.reaperinterval, self._reap)
        for name, interval, fn in self.periodic:
            ttl = self.lease_ttl(interval)
            Monitor(cherrypy.engine, self._leased(name, ttl, fn), frequency=interval, name=name).subscribe()

    @staticmethod
    def lease_ttl(interval: float) -> float:
        """How long the lease of a task run every `interval` s is held: a few missed runs
        before another server takes it over."""
        return max(10.0, interval * 5)

    def _leased(self, name: str, ttl: float, fn: Callable[[], Any]) -> Callable[[], None]:
        def tick() -> None:
            try:
                if self.uc.upkeep.lease(name, self.holder, ttl):
                    fn()
            except StoreError as exc:
                log.warning("%s: database unavailable: %s", name, exc)
            except Exception:  # noqa: BLE001 - a periodic task must never die silently
                log.exception("%s failed", name)

        return tick

    def _reap(self) -> None:
        self.uc.upkeep.reap()
        now = self.clock()
        if now - self._last_purge > 3600:
            self._last_purge = now
            self.uc.upkeep.purge()

    # -- life -------------------------------------------------------------------------------
    def start(self, handle_signals: bool = True) -> None:
        """Start serving (returns once the port is bound)."""
        # A database just upgraded from Coalition 4 gets its derived fields before any pick.
        self.uc.upkeep.rebuild_tree()
        self.limits.seed()  # the ini's limits the database lacks
        if handle_signals:
            # Before the port opens: a SIGTERM right after start must still stop us cleanly.
            cherrypy.engine.signals.subscribe()
        self.configure()
        self.mount()
        from . import cloudmode

        cloudmode.enable(self)
        self._subscribe_monitors()
        if self.settings.discovery and self.settings.port:
            # Bound before HTTP answers, so that "the server is up" includes discovery.
            self.discovery = DiscoveryResponder(self.settings.listen, self.settings.port)
            self.discovery.start()
        # Slow clients cost a blocked thread each, not the farm's service (guard.py). The HTTP
        # server is made here, as cherrypy.server.start() would, and guarded before it
        # accepts its first connection.
        from . import guard

        s = self.settings
        server = cherrypy.server
        server.httpserver, server.bind_addr = server.httpserver_from_self()
        limits = guard.ReadLimits(header_timeout=s.headertimeout, body_timeout=s.bodytimeout)
        pool = guard.install(server.httpserver, max(1024, 4 * s.threads), limits)
        self.metrics.http_threads = pool.threads
        self.metrics.http_cut = guard.DEADLINES.counts
        self.waker.start()
        cherrypy.engine.start()
        cherrypy.engine.wait(cherrypy.engine.states.STARTED)
        if self.settings.discovery and not self.settings.port:
            self.discovery = DiscoveryResponder(self.settings.listen, self.bound_port())
            self.discovery.start()

    def bound_port(self) -> int:
        """The TCP port actually bound (useful with port 0)."""
        addr = getattr(cherrypy.server, "bound_addr", None)
        return int(addr[1]) if addr else self.settings.port

    def url(self) -> str:
        """The URL to print for people."""
        host = self.settings.listen
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        scheme = "https" if self.settings.ssl_certificate else "http"
        return f"{scheme}://{host}:{self.bound_port()}/"

    def block(self) -> None:
        """Serve until stopped by a signal."""
        cherrypy.engine.block()

    def stop(self) -> None:
        """Stop serving."""
        if self.discovery is not None:
            self.discovery.stop()
        self.waker.stop()
        cherrypy.engine.exit()
        self.store.close()


def _remote_ip() -> str:
    """The address of the current request's client (for the failed-login counters)."""
    return cherrypy.request.remote.ip or ""


class _NoWeb:
    """Served at / when the web page is not installed."""

    @cherrypy.expose
    def index(self) -> str:
        return (
            "<!doctype html><title>Coalition</title><p>Coalition is running. The web page is not "
            "installed (set <code>webdir</code>); the API is at <a href='/api/jobs'>/api</a>."
        )
