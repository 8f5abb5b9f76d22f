"""Kubernetes client plumbing shared by the k8s activities: client from a KubeTarget, raw JSON
calls, and the mapping of client failures onto the stackhop error tree.

Why raw JSON (``_preload_content=False``): the rollout logic is a port of kubectl's, which works on
unstructured objects; plain dicts keep field names identical to the API (``observedGeneration``),
avoid model (de)serialisation surprises across client versions, and are what watches return too.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, NoReturn, TypeVar

import urllib3
from kubernetes import client, config

# kubernetes-client imports an API group's module on its first use, and building its validators takes
# a while (core_v1_api 0.8 s, apps_v1_api 0.2 s): imported with the activities, at the worker's start,
# rather than by the first activities of a burst of upgrades, all at once.
from kubernetes.client.api import apps_v1_api, batch_v1_api, core_v1_api  # noqa: F401
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from temporalio.exceptions import FailureError

from model import errors
from model.plan import KubeTarget

# Client-side bound on any single non-watch request: a hung apiserver must not hang an activity.
REQUEST_TIMEOUT = (3, 30)  # (connect, read) seconds
# urllib3 retries per request: few, so an unreachable apiserver surfaces quickly to the watch loop,
# which retries with backoff *and heartbeats* (a blackholed host would otherwise block a request
# for (retries + 1) x connect timeout without a heartbeat).
HTTP_RETRIES = 1
SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"

T = TypeVar("T")


def kubeconfig_path(target: KubeTarget) -> str:
    """Like kubectl: the plan's path, else $KUBECONFIG (may be a ':' list), else ~/.kube/config.

    Resolved at call time (the client library reads KUBECONFIG once, at import).
    """
    return target.kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


IN_CLUSTER = "in-cluster"  # KubeTarget.context for a worker running in the cluster it upgrades


def _configuration() -> client.Configuration:
    conf = client.Configuration()
    conf.retries = HTTP_RETRIES
    conf.connection_pool_maxsize = POOL_SIZE
    return conf


def _in_cluster_client() -> client.ApiClient:
    conf = _configuration()
    config.load_incluster_config(client_configuration=conf)
    return client.ApiClient(conf)


# One ApiClient per kubeconfig file and context, shared by every activity of the worker: building one
# parses the kubeconfig and each new client opens its own TLS connection, which at 50 concurrent upgrades
# was an eighth of the worker's CPU (bench/scale.py). urllib3's pool is thread-safe; tokens from exec
# plugins and the in-cluster service account are refreshed per request by the library's hook. A client
# is rebuilt when the kubeconfig file changes, and after CLIENT_TTL as a safety net (a CA or key file
# the kubeconfig names by path can change under the same kubeconfig).
POOL_SIZE = 128  # connections kept per apiserver: one per concurrent watch, up to the activity slots
CLIENT_TTL = 300.0
_clients: dict[tuple[Any, ...], tuple[float, client.ApiClient]] = {}
_clients_lock = threading.Lock()


def _signature(path: str) -> tuple[tuple[str, int, int], ...]:
    """What identifies the kubeconfig's content: each file's mtime and size (KUBECONFIG may be a list)."""
    files = []
    for part in path.split(os.pathsep):
        st = os.stat(part)  # a missing file raises: not cached, reported like any unusable kubeconfig
        files.append((part, st.st_mtime_ns, st.st_size))
    return tuple(files)


def _shared_client(target: KubeTarget, path: str) -> client.ApiClient:
    in_cluster = target.context == IN_CLUSTER and not target.kubeconfig
    key = (IN_CLUSTER,) if in_cluster else (target.context, _signature(path))
    now = time.monotonic()
    with _clients_lock:
        cached = _clients.get(key)
        if cached and now - cached[0] < CLIENT_TTL:
            return cached[1]
        api: client.ApiClient = (
            _in_cluster_client()
            if in_cluster
            else config.new_client_from_config(
                config_file=path, context=target.context, persist_config=False, client_configuration=_configuration()
            )
        )
        _clients[key] = (now, api)  # a replaced client is closed when its last user drops it
        return api


@contextmanager
def api_client(target: KubeTarget) -> Iterator[client.ApiClient]:
    """The worker's shared ApiClient for the target's context (see ``_shared_client``).

    Context "in-cluster" (without a kubeconfig path) uses the pod's service account (deploy/).
    """
    path = kubeconfig_path(target)
    try:
        api = _shared_client(target, path)
    except (ConfigException, FileNotFoundError, OSError) as exc:
        raise errors.permanent(
            errors.PLAN_INVALID,
            f"cannot use kubeconfig context {target.context!r} from {path}: {exc}",
            context=target.context,
            kubeconfig=path,
        ) from exc
    yield api


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call a generated API method and return the response body as a dict (raises ApiException)."""
    kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
    resp = fn(*args, _preload_content=False, **kwargs)
    try:
        if not 200 <= resp.status <= 299:
            raise ApiException(http_resp=resp)
        body: dict[str, Any] = json.loads(resp.data or b"{}")
        return body
    finally:
        resp.release_conn()


def retry_conflicts(fn: Callable[[], T], attempts: int = 8, first_pause: float = 0.02) -> T:
    """Run a read-modify-write ``fn`` again when its resourceVersion precondition lost a race.

    Controllers update status (and so the resourceVersion) all the time; a 409 right after a read
    is normal and is retried here instead of costing a whole activity retry. The pauses double from
    ``first_pause`` (1.3 s in all): the controller writes a Deployment's status several times in the
    first second of a rollout, and five immediate attempts all lost to it once.
    """
    pause = first_pause
    for _ in range(attempts - 1):
        try:
            return fn()
        except ApiException as exc:
            if exc.status != 409:
                raise
        time.sleep(pause * random.uniform(0.8, 1.2))
        pause *= 2
    return fn()  # the last attempt: a conflict now propagates


def status_reason(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
        return str(body.get("message") or exc.reason)
    except (ValueError, TypeError):
        return str(exc.reason)


def is_transient(exc: BaseException) -> bool:
    """True for failures a retry can fix: connection trouble, 409/429/5xx."""
    if isinstance(exc, ApiException):
        return exc.status in (0, None, 409, 429) or (exc.status or 0) >= 500
    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, OSError))


def to_app_error(exc: BaseException, what: str, **details: Any) -> BaseException:
    """Map a client failure to the error tree; ``what`` names the object for the message.

    Temporal's own failures (an ApplicationError raised below us, CancelledError) pass unchanged.
    """
    if isinstance(exc, FailureError):
        return exc
    if isinstance(exc, ApiException):
        reason = status_reason(exc)
        details.update(status=exc.status)
        if exc.status == 404:
            return errors.permanent(errors.WORKLOAD_NOT_FOUND, f"{what} not found: {reason}", **details)
        if is_transient(exc):
            return errors.temporary(f"{what}: API error {exc.status}: {reason}", **details)
        # 400/401/403/422...: a wrong plan, manifest or RBAC setup; retrying cannot help
        return errors.permanent(errors.PLAN_INVALID, f"{what}: rejected by the API ({exc.status}): {reason}", **details)
    if is_transient(exc):
        return errors.temporary(f"{what}: Kubernetes API unreachable: {exc}", **details)
    return errors.permanent(errors.PLAN_INVALID, f"{what}: {type(exc).__name__}: {exc}", **details)


def reraise(exc: BaseException, what: str, **details: Any) -> NoReturn:
    """Raise ``exc`` mapped onto the error tree (call inside ``except``).

    An error that is already Temporal's (ApplicationError, CancelledError) is re-raised as is:
    ``raise exc from exc`` would make it its own cause, and Temporal's failure converter would
    recurse on that cycle until the stack overflows.
    """
    mapped = to_app_error(exc, what, **details)
    if mapped is exc:
        raise exc
    raise mapped from exc


class Kinds:
    """Per-kind API methods (apps/v1), keyed by WorkloadKind."""

    _SUFFIX: ClassVar[dict[str, str]] = {
        "Deployment": "deployment",
        "StatefulSet": "stateful_set",
        "DaemonSet": "daemon_set",
    }

    def __init__(self, api: client.ApiClient) -> None:
        self.apps = client.AppsV1Api(api)

    def read(self, kind: str) -> Callable[..., Any]:
        return self._method("read", kind)

    def patch(self, kind: str) -> Callable[..., Any]:
        return self._method("patch", kind)

    def list(self, kind: str) -> Callable[..., Any]:
        return self._method("list", kind)

    def _method(self, verb: str, kind: str) -> Callable[..., Any]:
        method: Callable[..., Any] = getattr(self.apps, f"{verb}_namespaced_{self._SUFFIX[kind]}")
        return method
