"""The upgrade plan: what an operator writes, validated before anything is touched.

One pydantic model both sides import: the CLI validates a YAML file into it, the workflow receives it
as its input (through the pydantic data converter), and activities read the parts they need.
Every model forbids unknown fields so a typo is an error, not a silently ignored setting.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from model.dataplane import DataPlane
from model.plan_base import AT as AT
from model.plan_base import FIX as FIX
from model.plan_base import MAX_DURATION as MAX_DURATION
from model.plan_base import DurationField as DurationField
from model.plan_base import Strict as Strict
from model.plan_base import parse_duration as parse_duration
from model.releases import Release

NAME_RE = r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$"
K8S_OBJECT_RE = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"  # a Secret or PVC name (DNS subdomain)
# MariaDB schema names are written unquoted into SQL and shell text (activities/database.py): plain
# identifiers only, at most 64 characters, not all digits (MariaDB reads those as a number).
SQL_NAME_RE = re.compile(r"[A-Za-z0-9_]{1,64}")
SQL_NAME_ERROR = "sql_identifier"  # the error type model.loading gives its own fix


def sql_identifier(value: str) -> str:
    """A schema name that is safe unquoted in SQL and shell: refused here, at `plan validate`."""
    if not SQL_NAME_RE.fullmatch(value) or value.isdigit():
        raise PydanticCustomError(SQL_NAME_ERROR, "{value} is not a plain SQL identifier", {"value": repr(value)})
    return value


SqlName = Annotated[str, AfterValidator(sql_identifier)]


class Metadata(Strict):
    name: str = Field(pattern=NAME_RE, description="Name of this plan (shown in the Temporal UI).")
    labels: dict[str, str] = Field(default_factory=dict)


class KubeTarget(Strict):
    context: str = Field(description="kubeconfig context of the cluster that runs the cloud.")
    namespace: str = Field(default="openstack", pattern=NAME_RE)
    kubeconfig: str | None = Field(default=None, description="kubeconfig path; default: KUBECONFIG or ~/.kube/config.")


class OpenStackTarget(Strict):
    cloud: str = Field(description="Entry in clouds.yaml (OS_CLIENT_CONFIG_FILE) with admin rights.")


class Cloud(Strict):
    name: str = Field(pattern=NAME_RE, description="The lock: one upgrade per cloud at a time.")
    kubernetes: KubeTarget
    openstack: OpenStackTarget


class ReleaseRange(Strict):
    from_: Release = Field(alias="from")
    to: Release


class Policy(Strict):
    on_failure: Literal["rollback", "pause", "fail"] = "rollback"
    rollout_timeout: DurationField = Field(default=600, description="Per rollout wait (e.g. 10m).")
    step_timeout: DurationField = Field(default=1800, description="Per migration/check step.")
    gate_timeout: DurationField = Field(default=86400, description="How long a gate waits.")
    heartbeat_timeout: DurationField = Field(default=60)
    max_attempts: int = Field(default=5, ge=1, le=20, description="Retries of temporary errors.")
    restore: Literal["approve", "automatic"] = Field(
        default="approve",
        description="A restore that would discard writers' changes waits for `stackhop approve` (approve) or not.",
    )
    snapshot_host_timeout: DurationField = Field(
        default=300,
        description="How long verify/restore wait for the worker host that holds the snapshot file.",
    )
    probe: bool = Field(
        default=True,
        description="Call each service's API every second from its first changing step to the end of its upgrade "
        "(rollback included) and report requests, errors and the longest outage (activity probe.availability); "
        "false: no probe.",
    )

    @field_validator(
        "rollout_timeout", "step_timeout", "gate_timeout", "heartbeat_timeout", "snapshot_host_timeout", mode="before"
    )
    @classmethod
    def _duration(cls, v: object) -> int:
        return parse_duration(v)


class Database(Strict):
    name: SqlName = Field(
        description="MariaDB schema of the service: letters, digits and _ (at most 64).",
        json_schema_extra={"pattern": f"^{SQL_NAME_RE.pattern}$"},
    )
    runner: Literal["local", "job"] = Field(
        default="local", description="local: the worker runs the client tools; job: a Kubernetes Job."
    )
    defaults_file: str | None = Field(
        default=None, description="MariaDB option file with host/port/user/password (not inline)."
    )
    snapshot_dir: str | None = Field(default=None, description="Where snapshots are written.")
    snapshot_storage: Literal["worker", "shared"] = Field(
        default="worker",
        description="worker: the file stays on the worker host that took it (verify/restore run there); "
        "shared: snapshot_dir is storage every worker reads (the job runner's PVC is shared).",
    )
    users: list[SqlName] = Field(
        default_factory=list,
        description="MariaDB users of the service: a restore refuses while any of them has a session.",
    )
    # added for the database activities (defaults keep existing plans valid)
    lock_wait_timeout: int = Field(
        default=30,
        ge=1,
        le=3600,
        description="Seconds a restore's DROP/CREATE waits for metadata locks (server default: a day).",
    )
    job_image: str = Field(
        default="docker.io/library/mariadb:10.11", description="job runner: image with the MariaDB client tools."
    )
    credentials_secret: str | None = Field(
        default=None, pattern=K8S_OBJECT_RE, description="job runner: Secret whose key 'my.cnf' is the defaults file."
    )
    snapshot_pvc: str | None = Field(
        default=None,
        pattern=K8S_OBJECT_RE,
        description="job runner: PVC mounted at snapshot_dir that keeps the snapshots.",
    )


class Migration(Strict):
    mode: Literal["expand-contract", "offline", "none"] = "none"
    runner: Literal["local", "job"] = "local"
    command: list[str] | None = Field(
        default=None,
        description="db sync command; '{version}' is replaced by the target image tag.",
    )
    # added for the migration activity (defaults keep existing plans valid)
    config_secret: str | None = Field(
        default=None,
        pattern=K8S_OBJECT_RE,
        description="job runner: Secret with the service config, mounted at config_mount.",
    )
    config_mount: str = Field(default="/etc/{service}", description="job runner: where config_secret is mounted.")
    max_rounds: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="Rounds of online data migrations (nova, placement) one call of the migration activity runs "
        "(each migrates at most 1000 rows); the workflow calls it again while the tool says there is more to do.",
    )
    unproven_recipe: Literal["refuse", "accept"] = Field(
        default="refuse",
        description="A service whose recipe (model/recipes/) was never run against the real service (cinder) is "
        "refused unless this says accept: its steps follow the upstream docs only.",
    )


WorkloadKind = Literal["Deployment", "StatefulSet", "DaemonSet"]


class Workload(Strict):
    kind: WorkloadKind
    name: str = Field(pattern=NAME_RE)
    container: str = Field(pattern=NAME_RE)
    image: str = Field(min_length=1, description="Target image, e.g. REPO/keystone:29.1.0")
    quiesce: bool | None = Field(
        default=None,
        description="Scaled to 0 when the service is quiesced (offline migration, restore). "
        "Default: yes for Deployments and StatefulSets; a DaemonSet is never scaled, so set false.",
    )

    @property
    def tag(self) -> str:
        last = self.image.rsplit("/", 1)[-1]
        return last.split(":", 1)[1] if ":" in last else "latest"


VALUE_PATH_RE = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"  # a dotted path into Helm values: images.tags.keystone_api


class HelmRelease(Strict):
    """The Helm release that owns a service's workloads: stackhop changes its values, never the objects.

    Under a release, a roll is a ``helm upgrade`` of this release to ``version`` of ``chart`` that sets
    ``image_values`` and keeps every other value the operator supplied exactly; its undo is a
    ``helm rollback`` to the revision recorded before the change. A quiesce (offline migration,
    restore) sets ``replica_values`` to 0 the same way, because scaling an owned object directly is
    what the owner undoes on its next sync.
    """

    release: str = Field(pattern=NAME_RE, description="Name of the Helm release (helm list).")
    namespace: str | None = Field(
        default=None, pattern=NAME_RE, description="Namespace of the release; default: cloud.kubernetes.namespace."
    )
    chart: str = Field(
        min_length=1,
        description="Chart to upgrade to: repo/name, oci://..., a chart name with `repo`, or the path of one chart "
        "(./ ../ or /, relative to the plan file; it holds one version only, so prefer a local `repo`).",
    )
    repo: str | None = Field(
        default=None,
        description="Chart repository of `chart`: a URL (helm --repo), or a local directory (./ ../ or /, relative "
        "to the plan file) holding <chart>-<version>/ or <chart>-<version>.tgz, as `helm package` names them.",
    )
    version: str = Field(
        min_length=1, description="Chart version to upgrade to (the deployed one, to change only images)."
    )
    image_values: dict[Annotated[str, Field(pattern=VALUE_PATH_RE)], str] = Field(
        min_length=1,
        description="Value path -> target image, e.g. images.tags.keystone_api: REPO/keystone:29.1.0. Every "
        "workload's target image must be set by one of them.",
    )
    replica_values: dict[str, Annotated[str, Field(pattern=VALUE_PATH_RE)]] = Field(
        default_factory=dict,
        description="Workload name -> value path of its replicas (pod.replicas.api), so a quiesce goes through "
        "the release; needed for every workload of the quiesce set.",
    )
    timeout: DurationField = Field(default=300, description="How long one helm command may run (e.g. 5m).")
    restart_value: Annotated[str, Field(pattern=VALUE_PATH_RE)] | None = Field(
        default=None,
        description="Value path the chart writes into the pod templates' annotations (e.g. "
        "pod.annotations.restart): a restart (nova's unpin) sets it to a new value, as `kubectl rollout restart` "
        "sets an annotation. Needed by a service whose recipe restarts its workloads under Helm.",
    )

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, v: object) -> int:
        return parse_duration(v)

    @property
    def is_path(self) -> bool:
        return self.chart.startswith(("./", "../", "/"))

    @property
    def local_repo(self) -> bool:
        """``repo`` is a directory of packaged or unpacked charts (helm has no file:// repositories)."""
        return bool(self.repo) and str(self.repo).startswith(("./", "../", "/"))


class EndpointCheck(Strict):
    kind: Literal["endpoint"]
    service_type: str = Field(description="Catalog service type, e.g. identity.")


class UpgradeStatusCheck(Strict):
    kind: Literal["upgrade-status"]
    command: list[str] | None = Field(default=None, description="Default: <service>-status upgrade check")


class TempestCheck(Strict):
    kind: Literal["tempest"]
    regex: str
    concurrency: int = Field(default=2, ge=1, le=16)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except (re.error, RecursionError, OverflowError) as e:  # pydantic reports only ValueError
            raise ValueError(f"not a regular expression: {e}") from None
        return v


Check = Annotated[EndpointCheck | UpgradeStatusCheck | TempestCheck, Field(discriminator="kind")]


class Gate(Strict):
    approval: bool = False
    name: str | None = Field(default=None, description="Gate name for `stackhop approve`; default: service name.")


class Service(Strict):
    name: str = Field(pattern=NAME_RE)
    service_type: str | None = Field(default=None, description="Default: known from the name.")
    depends_on: list[str] | None = Field(default=None, description="Omitted: OpenStack's documented order decides.")
    database: Database | None = None
    databases: list[Database] | None = Field(
        default=None,
        min_length=1,
        description="Several databases of one service (nova: nova_api, nova_cell0, nova), snapshotted, verified "
        "and restored together; instead of `database`, which names one.",
    )
    migration: Migration = Migration()
    workloads: list[Workload] = Field(min_length=1)
    helm: HelmRelease | None = Field(
        default=None,
        description="The Helm release that owns the workloads: rolls change its values (omitted: the workloads "
        "are plain objects that stackhop patches, refused when anything else owns them).",
    )
    checks: list[Check] = Field(default_factory=list)
    gate: Gate = Gate()
    data_plane: DataPlane | None = Field(
        default=None,
        description="Its per-node workloads (nova-compute), upgraded node batch by node batch after the control "
        "plane rolled out, each node drained first (model/dataplane.py).",
    )

    @property
    def all_databases(self) -> list[Database]:
        """Every database of the service: ``databases``, else the one ``database`` (else none)."""
        if self.databases:
            return list(self.databases)
        return [self.database] if self.database is not None else []

    @property
    def may_quiesce(self) -> bool:
        """Whether a migration or a restore may scale this service to 0 (it has a database that a
        migration changes, or it migrates offline)."""
        return (bool(self.all_databases) and self.migration.mode != "none") or self.migration.mode == "offline"

    @model_validator(mode="after")
    def _one_way_to_name_databases(self) -> Service:
        """``database`` or ``databases``, not both; each schema once."""
        if self.database is not None and self.databases:
            raise PydanticCustomError(
                "database_twice",
                "{service} names its databases twice: database and databases",
                {
                    "service": self.name,
                    AT: "databases",
                    FIX: "list every database under databases and remove database",
                },
            )
        names = [d.name for d in self.databases or []]
        for j, name in enumerate(names):
            if name in names[:j]:
                raise PydanticCustomError(
                    "database_duplicate",
                    "database {name} is listed twice",
                    {"name": name, AT: f"databases[{j}].name", FIX: "list each database once"},
                )
        return self

    @model_validator(mode="after")
    def _no_daemonset_to_quiesce(self) -> Service:
        """A DaemonSet cannot be scaled to 0, so one left in the quiesce set would be a promise the
        quiesce cannot keep: its pods would still use the database during a migration or restore.
        The operator says so explicitly with ``quiesce: false``."""
        if not self.may_quiesce:
            return self
        for j, w in enumerate(self.workloads):
            if w.kind == "DaemonSet" and w.quiesce is not False:
                raise PydanticCustomError(
                    "daemonset_quiesced",
                    "DaemonSet {name} is in the quiesce set of {service}, but a DaemonSet cannot be scaled to 0",
                    {
                        "name": w.name,
                        "service": self.name,
                        AT: f"workloads[{j}].quiesce",
                        FIX: f"set quiesce: false on DaemonSet {w.name}: DaemonSets are never scaled; its pods "
                        f"keep running while {self.name} is quiesced for a migration or restore, so make sure "
                        "they do not use its database directly",
                    },
                )
        return self

    @model_validator(mode="after")
    def _helm_covers_workloads(self) -> Service:
        """Under Helm the release's values are the only lever: a workload whose target image no
        ``image_values`` entry sets would never reach it, and a workload of the quiesce set without a
        ``replica_values`` path could only be scaled behind the release's back."""
        if self.helm is None:
            return self
        images = set(self.helm.image_values.values())
        for w in self.workloads:
            if w.image not in images:
                raise PydanticCustomError(
                    "helm_image_unset",
                    "no helm.image_values entry sets {image}, the target image of {name}",
                    {
                        "image": w.image,
                        "name": w.name,
                        AT: "helm.image_values",
                        FIX: f"add the value path the chart reads for {w.name}'s image, e.g. "
                        f"images.tags.{w.name.replace('-', '_')}: {w.image}",
                    },
                )
        if self.may_quiesce:
            for w in self.quiesce_set:
                if w.name not in self.helm.replica_values:
                    raise PydanticCustomError(
                        "helm_replicas_unset",
                        "{name} may be quiesced (scaled to 0) but helm.replica_values has no value path for it",
                        {
                            "name": w.name,
                            AT: "helm.replica_values",
                            FIX: f"add {w.name}: <value path of its replicas, e.g. pod.replicas.api>",
                        },
                    )
        for name in self.helm.replica_values:
            if name not in {w.name for w in self.workloads}:
                raise PydanticCustomError(
                    "helm_replicas_unknown",
                    "helm.replica_values names {name}, which is not a workload of {service}",
                    {
                        "name": name,
                        "service": self.name,
                        AT: "helm.replica_values",
                        FIX: "name a workload of this service",
                    },
                )
        return self

    @model_validator(mode="after")
    def _data_plane_daemonsets(self) -> Service:
        """The data plane's DaemonSets are the service's own (their images are the target the nodes
        are upgraded to), each saying ``quiesce: false``: a DaemonSet is never scaled, its pods are
        replaced node by node. With a selector only, the service lists at least one DaemonSet."""
        dp = self.data_plane
        if dp is None:
            return self
        daemonsets = [(j, w) for j, w in enumerate(self.workloads) if w.kind == "DaemonSet"]
        listed = ", ".join(w.name for _, w in daemonsets) or "none yet"
        chosen: list[tuple[int, Workload]] = []
        for k, name in enumerate(dp.workloads):
            found = [(j, w) for j, w in daemonsets if w.name == name]
            if not found:
                other = next((w for w in self.workloads if w.name == name), None)
                raise PydanticCustomError(
                    "dataplane_not_a_daemonset",
                    "{name} is a {kind} of {service}, not a DaemonSet: the data plane is its per-node DaemonSets"
                    if other is not None
                    else "{name} is not a workload of {service}",
                    {
                        "name": name,
                        "kind": other.kind if other is not None else "",
                        "service": self.name,
                        AT: f"data_plane.workloads[{k}]",
                        FIX: f"name a DaemonSet of {self.name}'s workloads ({listed}), or add it there: "
                        "{kind: DaemonSet, name: ..., container: ..., image: <target>, quiesce: false}",
                    },
                )
            chosen += found
        if not dp.workloads:
            if not daemonsets:
                raise PydanticCustomError(
                    "dataplane_no_daemonset",
                    "{service} lists no DaemonSet in workloads: the data plane's nodes are upgraded to its image",
                    {
                        "service": self.name,
                        AT: "data_plane.selector",
                        FIX: f"add the data plane's DaemonSet to {self.name}'s workloads: {{kind: DaemonSet, name: "
                        "nova-compute, container: nova-compute, image: <target>, quiesce: false}",
                    },
                )
            chosen = daemonsets
        for j, w in chosen:
            if w.quiesce is not False:
                raise PydanticCustomError(
                    "dataplane_quiesce_unset",
                    "DaemonSet {name} is in the data plane of {service} and does not say quiesce: false",
                    {
                        "name": w.name,
                        "service": self.name,
                        AT: f"workloads[{j}].quiesce",
                        FIX: f"set quiesce: false on DaemonSet {w.name}: a DaemonSet is never scaled, the data plane "
                        "replaces its pods node by node",
                    },
                )
        return self

    @property
    def data_plane_workloads(self) -> list[Workload]:
        """The workloads of ``workloads`` that are the data plane's: those ``data_plane.workloads``
        names, else (a selector only) every DaemonSet listed — the plan lists one for the image its
        nodes reach; the selector finds the per-node overrides, which are not listed at all."""
        dp = self.data_plane
        if dp is None:
            return []
        if dp.workloads:
            return [w for w in self.workloads if w.name in dp.workloads]
        return [w for w in self.workloads if w.kind == "DaemonSet"]

    @property
    def quiesce_set(self) -> list[Workload]:
        """The workloads scaled to 0 when the service is quiesced (never a DaemonSet: model.loading
        refuses a plan that puts one in the set of a service that may need quiescing)."""
        return [w for w in self.workloads if w.quiesce is not False and w.kind != "DaemonSet"]

    @property
    def gate_name(self) -> str | None:
        return (self.gate.name or self.name) if self.gate.approval else None


class UpgradePlan(Strict):
    api_version: Literal["stackhop/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["UpgradePlan"]
    metadata: Metadata
    cloud: Cloud
    release: ReleaseRange
    policy: Policy = Policy()
    services: list[Service] = Field(min_length=1)

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def workflow_id(self) -> str:
        return f"upgrade/{self.cloud.name}"
