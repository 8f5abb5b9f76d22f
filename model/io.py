"""Inputs and outputs of every activity and workflow: the contract between the two sides.

Each activity and workflow takes ONE model and returns one, so fields can be added (with defaults)
without breaking upgrades that are already running. Activity names are constants here so the
workflows, the real activities and the stand-ins of the workflow tests all use the same strings.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import Field

from model.io_base import Msg as Msg
from model.io_dataplane import NodeResult
from model.ownership import Owner
from model.plan import Check, Database, HelmRelease, KubeTarget, Migration, UpgradePlan, WorkloadKind

# --- activity names ----------------------------------------------------------------------------
K8S_READ_IMAGES = "k8s.read_images"
K8S_SET_IMAGES = "k8s.set_images"
K8S_WAIT_ROLLOUT = "k8s.wait_rollout"
K8S_UNDO_IMAGES = "k8s.undo_images"
K8S_SCALE = "k8s.scale"
K8S_RESTART = "k8s.restart"
DB_SNAPSHOT = "db.snapshot"
DB_VERIFY = "db.verify_snapshot"
DB_RESTORE = "db.restore"
DB_INSPECT = "db.inspect"
MIGRATION_DB_SYNC = "migration.db_sync"
CHECKS_RUN = "checks.run"
TEMPEST_RUN = "tempest.run"
HELM_STATUS = "helm.status"
HELM_UPGRADE = "helm.upgrade"
HELM_ROLLBACK = "helm.rollback"
PROBE_AVAILABILITY = "probe.availability"
LEDGER_RECORD = "ledger.record"
LEDGER_READ = "ledger.read"
LEDGER_CHECK_CLOUD = "ledger.check_cloud"
PLAN_ADMIT = "plan.admit"


# --- Kubernetes --------------------------------------------------------------------------------
class WorkloadRef(Msg):
    kind: WorkloadKind
    name: str
    container: str


class WorkloadImage(WorkloadRef):
    image: str | None = None  # None: workload or container not found
    found: bool = True
    owner: Owner | None = None  # set by k8s.read_images: who owns the workload (model/ownership.py)


class ReadImagesInput(Msg):
    target: KubeTarget
    workloads: list[WorkloadRef]


class ReadImagesResult(Msg):
    images: list[WorkloadImage]


class SetImagesInput(Msg):
    target: KubeTarget
    images: list[WorkloadImage]  # the target images
    # Identifies this change in the workload's previous-images annotation so a retried attempt
    # reports the images from before the first attempt. "": the calling workflow's id/run id.
    change_id: str = ""


class SetImagesResult(Msg):
    previous: list[WorkloadImage]  # what undo restores


class WaitRolloutInput(Msg):
    target: KubeTarget
    workloads: list[WorkloadRef]
    timeout_seconds: int = 600
    # The images the workloads must show once rolled out (a Helm roll: the release's values must
    # have reached the objects); a mismatch is PlanInvalid naming the container. Empty: not checked.
    expect: list[WorkloadImage] = Field(default_factory=list)


class RolloutStatus(Msg):
    kind: WorkloadKind
    name: str
    ready: bool
    message: str = ""
    seconds: float = 0.0


class RolloutResult(Msg):
    workloads: list[RolloutStatus]


class UndoImagesInput(Msg):
    target: KubeTarget
    previous: list[WorkloadImage]
    timeout_seconds: int = 600
    # restored but not waited for: a service's data plane DaemonSets (OnDelete: they never roll by
    # themselves; their nodes are replaced one by one by the dataplane step)
    no_wait: list[str] = Field(default_factory=list)


class ScaleInput(Msg):
    target: KubeTarget
    workloads: list[WorkloadRef]
    replicas: dict[str, int] | None = None  # workload name -> replicas; None: scale to 0
    wait: bool = True
    timeout_seconds: int = 300
    change_id: str = ""  # as SetImagesInput.change_id, for the replicas recorded before quiesce
    # True: scale each workload back to the replicas its quiesce recorded (annotation, same
    # change_id), so an unquiesce can be registered before the quiesce ran; ``replicas`` is ignored
    restore: bool = False


class ScaleResult(Msg):
    previous: dict[str, int]  # pass back as ScaleInput.replicas to restore


class RestartInput(Msg):
    """Restart workloads as `kubectl rollout restart` does: a pod-template annotation whose new value
    makes the controller replace every pod (the wait is WaitRolloutInput's)."""

    target: KubeTarget
    workloads: list[WorkloadRef]
    # The annotation's value: a retry with the same change id finds it set and patches nothing.
    # "": the calling workflow's id/run id.
    change_id: str = ""


class RestartResult(Msg):
    restarted: list[str] = Field(default_factory=list)  # kind/name patched by this call
    already: list[str] = Field(default_factory=list)  # kind/name that carried this change id already


# --- Helm (the workload adapter for releases: workflows/adapters.py) ----------------------------
class HelmRevision(Msg):
    """One row of ``helm history``."""

    revision: int
    status: str  # deployed | superseded | failed | pending-upgrade | pending-rollback | pending-install | ...
    chart: str = ""  # name-version, e.g. keystone-2026.1.0
    app_version: str = ""
    description: str = ""  # a stackhop revision carries its change id here
    updated: str = ""


class HelmStatusInput(Msg):
    target: KubeTarget
    helm: HelmRelease


class HelmStatus(Msg):
    release: str
    namespace: str
    found: bool = True
    chart: str = ""  # of the current revision
    revision: int = 0  # the current (latest) revision
    status: str = ""  # of the current revision
    deployed_revision: int = 0  # the revision that runs: the last deployed, else the last superseded (0: none)
    history: list[HelmRevision] = Field(default_factory=list)


HelmPurpose = Literal["roll", "quiesce", "unquiesce", "restart"]
HelmWait = Literal["none", "rollout", "gone"]


class HelmUpgradeInput(Msg):
    """One ``helm upgrade`` of a release: its current user-supplied values with ``set_values``
    applied (every other value kept exactly; never --reuse-values), to ``chart_version``."""

    target: KubeTarget
    helm: HelmRelease
    purpose: HelmPurpose = "roll"
    chart_version: str = ""  # "": the chart version deployed now (quiesce, unquiesce)
    set_values: dict[str, Any] = Field(default_factory=dict)  # value path -> value; None removes the path
    # Written into the revision's description, so a retry recognises the revision its first attempt
    # made. "": the calling workflow's id and run id and the purpose.
    change_id: str = ""
    # unquiesce: the change id of the quiesce whose replica values come back (the values of the
    # revision before that quiesce's; set_values is then ignored). Lets the unquiesce be registered
    # before the quiesce ran, as ScaleInput.restore does.
    restore_of: str = ""
    wait: HelmWait = "none"  # rollout: until workloads rolled out; gone: until their pods are gone
    workloads: list[WorkloadRef] = Field(default_factory=list)  # what ``wait`` watches
    timeout_seconds: int = 600


class HelmRollbackInput(Msg):
    """``helm rollback`` to the revision recorded before a change, then wait like ``wait``."""

    target: KubeTarget
    helm: HelmRelease
    to_revision: int
    after_revision: int = 0  # the revision undone: a rollback to to_revision found after it is a retry's
    wait: HelmWait = "rollout"
    workloads: list[WorkloadRef] = Field(default_factory=list)
    timeout_seconds: int = 600


class HelmChange(Msg):
    release: str
    purpose: str = "roll"  # roll | quiesce | unquiesce | rollback
    revision_before: int = 0  # the revision deployed before this change: what its undo rolls back to
    revision: int = 0  # the revision this change made (revision_before when there was nothing to change)
    chart_before: str = ""
    chart_after: str = ""
    values_diff: list[str] = Field(default_factory=list)  # "images.tags.keystone_api: A -> B", one a line
    already: bool = False  # a retry found the revision its earlier attempt made: no new revision
    recovered: list[str] = Field(default_factory=list)  # e.g. revision 5 left pending-upgrade, rolled back to 4
    workloads: list[RolloutStatus] = Field(default_factory=list)  # what the wait saw
    seconds: float = 0.0


# --- database ----------------------------------------------------------------------------------
class SnapshotInput(Msg):
    upgrade_id: str  # names the snapshot; a retry overwrites its own file only
    service: str
    database: Database
    target: KubeTarget | None = None  # for the job runner


class Snapshot(Msg):
    service: str
    database: str
    location: str  # file path (local runner) or PVC path (job runner)
    sha256: str
    size_bytes: int
    table_checksums: dict[str, str] = Field(default_factory=dict)
    created_at: str = ""
    # added by the database activities: what a restore recreates, and what moved during the dump
    charset: str = "utf8mb4"
    collation: str = "utf8mb4_general_ci"
    changed_during_dump: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    # table -> sha256 of its definition (SHOW CREATE TABLE without AUTO_INCREMENT), to tell a
    # migration's change of a table from writers' changes of its rows
    table_definitions: dict[str, str] = Field(default_factory=dict)
    # Where the file is: the worker host that wrote it and the task queue only that host polls;
    # "" when the plan says the storage is shared (any worker reads it).
    host: str = ""
    task_queue: str = ""


class VerifyInput(Msg):
    snapshot: Snapshot
    database: Database
    target: KubeTarget | None = None


class VerifyResult(Msg):
    ok: bool
    tables: int = 0
    message: str = ""
    # added by the database activities
    table_checksums: dict[str, str] = Field(default_factory=dict)  # of the scratch load
    mismatched_tables: list[str] = Field(default_factory=list)
    changed_since_snapshot: list[str] = Field(default_factory=list)  # live schema vs snapshot (info)
    seconds: float = 0.0


class RestoreInput(Msg):
    snapshot: Snapshot
    database: Database
    target: KubeTarget | None = None


class InspectInput(Msg):
    """Before a restore: who still uses the database, and what the restore would undo."""

    snapshot: Snapshot
    database: Database
    target: KubeTarget | None = None


TableChangeKind = Literal["writers", "migration", "unknown"]


class TableChange(Msg):
    """A table whose live state differs from the snapshot. writers: same definition, other rows
    (a restore loses those writes); migration: the definition changed and the rows did not; unknown:
    both changed. A table only in the snapshot or only live is a migration change."""

    table: str
    change: TableChangeKind


class DbInspection(Msg):
    at: str  # ISO time of the inspection: the end of the data-loss window (it starts at the snapshot)
    sessions: list[str] = Field(default_factory=list)  # "id user@host db command time": who still uses it
    table_checksums: dict[str, str] = Field(default_factory=dict)  # live, now
    table_definitions: dict[str, str] = Field(default_factory=dict)  # live, now
    changes: list[TableChange] = Field(default_factory=list)

    @property
    def writers_changed(self) -> list[str]:
        return [c.table for c in self.changes if c.change != "migration"]


class RestoreResult(Msg):
    ok: bool
    table_checksums: dict[str, str] = Field(default_factory=dict)
    seconds: float = 0.0
    # True: the schema already equalled the snapshot (a retry after a restore whose result was
    # lost, e.g. the worker died before reporting it): nothing was dropped a second time
    already_restored: bool = False


# --- migration ---------------------------------------------------------------------------------
# online: the online data migrations (nova, placement, cinder), rerun while the tool says "more to
# do"; "migrate" keeps running them for those services, as it always did
MigrationPhase = Literal["check", "expand", "migrate", "contract", "offline", "online"]


class MigrateInput(Msg):
    service: str
    phase: MigrationPhase
    migration: Migration
    database: Database | None = None
    version: str = ""  # the target image tag (e.g. 29.1.0)
    image: str = ""  # the target image (job runner)
    target: KubeTarget | None = None


class MigrateResult(Msg):
    phase: MigrationPhase
    exit_code: int = 0
    # check: "up-to-date" | "expand-needed" | "contract-needed" | ...; online: "done" | "more-to-do"
    # (its rounds ran out while the tool still found work: call it again); other phases: "done"
    state: str = "done"
    output_tail: str = ""
    seconds: float = 0.0
    # added by the migration activity
    command: list[str] = Field(default_factory=list)  # what ran (first command of the phase)
    rounds: int = 0  # online data migration rounds (nova, cinder, placement)


# --- validation --------------------------------------------------------------------------------
CheckStatus = Literal["pass", "fail", "inconclusive"]


class CheckInput(Msg):
    service: str
    cloud: str  # clouds.yaml entry
    check: Check
    stage: Literal["pre", "post"] = "post"
    target: KubeTarget | None = None
    # The clouds.yaml, tempest workspace and tempest command come from the worker's environment
    # (OS_CLIENT_CONFIG_FILE, STACKHOP_TEMPEST_WORKSPACE, STACKHOP_TEMPEST_COMMAND), never from here.
    version: str = ""  # target release tag: fills {version} in an upgrade-status command
    timeout_seconds: int = 1800


class CheckResult(Msg):
    status: CheckStatus
    message: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0


class TempestResult(CheckResult):
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failing_tests: list[str] = Field(default_factory=list)
    junit_path: str = ""


# --- availability probe (activities/probe.py) ------------------------------------------------------
# What the probe calls for each catalog service type, once a second, while the service upgrades.
PROBE_APIS: Final[dict[str, str]] = {
    "identity": "token issue",
    "image": "image list",
    "network": "network list",
    "compute": "server list",
    "placement": "resource providers",
}


class ProbeInput(Msg):
    service: str
    service_type: str  # a key of PROBE_APIS
    cloud: str  # clouds.yaml entry (the plan's cloud.openstack.cloud), as checks.run uses it
    interval_seconds: float = 1.0
    # The probe returns its counters on its own after this long (its start-to-close bound is a
    # minute more), so a service whose upgrade outlasts it still gets a result.
    max_seconds: int = 6 * 3600


class Availability(Msg):
    """What the users of one service's API saw while it upgraded: every request of the probe, the
    failed ones, and outages (runs of consecutive failed requests; an outage lasts from its first
    failed request to the next successful one)."""

    service: str
    api: str  # what it calls, e.g. "token issue"
    requests: int = 0
    errors: int = 0
    longest_outage_s: float = 0.0
    outages: int = 0
    last_error: str = ""
    seconds: float = 0.0  # how long it probed
    attempts: int = 1  # activity attempts: more than one when a worker restart or a timeout retried it
    note: str = ""  # e.g. why the result is partial (the probe failed, its bound was reached)


class ProbeState(Msg):
    """The probe's heartbeat details: its counters and the outage in progress (epoch seconds, so
    another worker's attempt carries them on). The UI shows them under the pending activity."""

    counters: Availability
    outage_since: float = 0.0  # start of the first failed request of the open outage; 0: none
    started_at: float = 0.0  # the first attempt's start
    last_at: float = 0.0  # the last request's start
    kinds: dict[str, int] = Field(default_factory=dict)  # error type -> count


# --- workflows ---------------------------------------------------------------------------------
StepStatus = Literal["running", "done", "failed", "skipped", "compensated"]


class StepRecord(Msg):
    service: str
    step: str
    status: StepStatus
    started_at: str = ""
    ended_at: str = ""
    seconds: float = 0.0
    detail: str = ""


ServiceState = Literal[
    "pending",
    "running",
    "waiting",
    "paused",
    "rolling-back",
    "succeeded",
    "rolled-back",
    "failed",
    "aborted",
]


DECISION = "decision"  # ServiceProgress.waiting_for when the operator must resume, approve, abort or abandon

# The commands that answer a decision (ServiceProgress.answers lists those the waiting one takes).
APPROVE: Final = "approve"
RESUME: Final = "resume"
ABORT: Final = "abort"
ABANDON: Final = "abandon"
Answer = Literal["approve", "resume", "abort", "abandon"]


class ServiceProgress(Msg):
    service: str
    state: ServiceState = "pending"
    step: str = ""
    steps_done: int = 0
    steps_total: int = 0
    waiting_for: str | None = None  # a gate name, or "decision"
    decision: str = ""  # the id of the decision waiting (<service>/<step>#<n>, see decision_id), if any
    answers: list[Answer] = Field(default_factory=list)  # the commands that answer it
    past_point_of_no_return: bool = False
    message: str = ""
    seq: int = 0  # grows with every change: of two views of one service, the higher is newer
    batch: str = ""  # the data plane batch running or next (nova batch 2/3: node-a, node-b (az-1)), if any


Outcome = Literal["succeeded", "rolled-back", "failed", "aborted"]


class UpgradeInput(Msg):
    plan: UpgradePlan
    plan_file: str = ""
    requested_by: str = ""
    approved_gates: list[str] = Field(default_factory=list)  # pre-approved at start


class AdmitInput(Msg):
    """The plan an Upgrade was started with, for the worker to re-validate (activities/admission.py)."""

    plan: UpgradePlan
    plan_file: str = ""


class Admitted(Msg):
    message: str = ""  # what the worker checked


class ServiceUpgradeInput(Msg):
    plan: UpgradePlan
    service: str
    upgrade_id: str
    approved_gates: list[str] = Field(default_factory=list)


RollbackKind = Literal["none", "images", "restore"]


class RollbackReport(Msg):
    """What a rollback did and what it cost. ``kind`` follows model/recipe.py: images (previous
    images only, the schema stays as the completed steps left it), restore (the snapshot is back),
    none (nothing needed undoing). The data-loss window is only set by a restore: from the snapshot
    to the inspection made while the service was quiesced, i.e. the last moment anything wrote."""

    kind: RollbackKind
    reason: str = ""  # the rule that chose the kind
    schema_state: str = (
        ""  # the schema state it leaves, e.g. "expanded to 2026.1 (29.1.0); the contract did not run; …"
    )
    loss_from: str = ""  # ISO time of the snapshot
    loss_to: str = ""  # ISO time of the inspection before the restore
    table_changes: list[TableChange] = Field(default_factory=list)  # what the restore undid, per table
    lost: str = ""  # what was lost, in words: "nothing: …" or "N tables had writers' changes: …"


class ServiceResult(Msg):
    service: str
    outcome: Outcome
    message: str = ""
    steps: list[StepRecord] = Field(default_factory=list)
    snapshot: Snapshot | None = None  # of the first database
    snapshots: list[Snapshot] = Field(default_factory=list)  # of every database, when the service has several
    previous_images: list[WorkloadImage] = Field(default_factory=list)
    checks: list[CheckResult] = Field(default_factory=list)
    tempest: TempestResult | None = None
    restore: RestoreResult | None = None  # set when a rollback restored the snapshot
    rollback: RollbackReport | None = None  # set when a rollback ran (or found nothing to undo)
    left_undone: list[str] = Field(default_factory=list)  # compensations an abandoned rollback did not complete
    helm: list[HelmChange] = Field(default_factory=list)  # the release revisions this upgrade made, in order
    availability: Availability | None = None  # the API probe's counters, from its first changing step to its end
    data_plane: list[NodeResult] = Field(default_factory=list)  # every data plane node: release, servers moved, outcome


class UpgradeReport(Msg):
    plan: str
    cloud: str
    release_from: str
    release_to: str
    outcome: Outcome
    message: str = ""
    started_at: str = ""
    ended_at: str = ""
    services: list[ServiceResult] = Field(default_factory=list)
    preflight: list[StepRecord] = Field(default_factory=list)
    # what the pre-flight found in the ledger and the cloud (disagreements first: the cloud won), and
    # what the end of the upgrade recorded there (workflows/ledger.py)
    ledger: list[str] = Field(default_factory=list)


class UpgradeStatus(Msg):
    plan: str
    cloud: str
    phase: str  # preflight | upgrading | paused | rolling-back | done
    paused: bool = False
    aborting: bool = False
    order: list[list[str]] = Field(default_factory=list)  # waves of services
    # As the Upgrade workflow knows them: pending, running (its child started) or the child's
    # outcome. Readers replace a running one with the child's own `status` query (cliapp.progress).
    services: list[ServiceProgress] = Field(default_factory=list)
    gates: dict[str, str] = Field(default_factory=dict)  # service -> the name of its approval gate
    outcome: str | None = None
    message: str = ""


class CanaryInput(Msg):
    name: str
    plan: UpgradePlan


class CanaryResult(Msg):
    name: str
    passed: bool
    report: UpgradeReport | None = None
    reset: list[StepRecord] = Field(default_factory=list)  # what returned it to baseline
    message: str = ""


# --- the upgrade ledger (workflows/ledger.py, activities/ledger.py) -----------------------------
def ledger_workflow_id(cloud: str) -> str:
    """The one Ledger workflow of a cloud: what each upgrade of it left pending."""
    return f"ledger/{cloud}"


class LedgerEntry(Msg):
    """What the last upgrade that touched a service left: the release it reached and its debts."""

    service: str
    release: str = ""  # the release the service runs (reached, or back to after a rollback)
    version: str = ""  # its tag (fills {version} in the worker's commands)
    online_pending: bool = False  # online data migrations of ``release`` not yet complete
    online_command: str = ""  # what finishes them (the recipe's command)
    expanded_not_contracted: bool = False  # e.g. a rollback (previous images) after a complete expand
    contract_command: str = ""  # what contracts it (the next upgrade to the release does it)
    outcome: str = ""  # of that service's upgrade
    upgrade_id: str = ""  # the upgrade workflow (id/run) that left this entry
    run_id: str = ""
    recorded_at: str = ""
    source: Literal["upgrade", "cloud"] = "upgrade"  # cloud: a pre-flight's check of the cloud corrected it


class LedgerRecord(Msg):
    """One record: an upgrade's end (entries of the services it touched), or a pre-flight's
    correction (the cloud disagreed: ``source`` cloud)."""

    cloud: str
    upgrade_id: str
    run_id: str = ""
    release_from: str = ""
    release_to: str = ""
    outcome: str = ""
    entries: list[LedgerEntry] = Field(default_factory=list)
    recorded_at: str = ""
    source: Literal["upgrade", "cloud"] = "upgrade"


class LedgerEvent(Msg):
    """One line of the ledger's (small) history."""

    upgrade_id: str
    run_id: str = ""
    outcome: str = ""
    at: str = ""
    summary: str = ""


class LedgerState(Msg):
    cloud: str
    services: dict[str, LedgerEntry] = Field(default_factory=dict)
    history: list[LedgerEvent] = Field(default_factory=list)  # newest last, at most LEDGER_HISTORY
    records: int = 0  # recorded since the ledger began (every run)
    runs: int = 1  # this run's number: continue-as-new starts the next

    def pending(self) -> list[LedgerEntry]:
        return [e for e in self.services.values() if e.online_pending or e.expanded_not_contracted]


class LedgerInput(Msg):
    cloud: str
    state: LedgerState | None = None  # carried over by continue-as-new
    records_per_run: int = 200  # continue-as-new after this many records (or when Temporal suggests it)


class LedgerReadInput(Msg):
    cloud: str


class LedgerRead(Msg):
    found: bool  # False: no ledger yet (no upgrade recorded on this cloud)
    state: LedgerState


class LedgerAck(Msg):
    message: str = ""


class CloudCheckInput(Msg):
    """Ask the cloud what the ledger says: each service's online-migration check and schema check."""

    plan: UpgradePlan
    ledger: LedgerState | None = None  # the versions the services run now, where it knows them


OnlineState = Literal["pending", "done", "unknown", "not-applicable"]


class ServiceCloudCheck(Msg):
    service: str
    online: OnlineState = "not-applicable"
    online_command: str = ""  # what finishes them
    online_detail: str = ""  # what the check saw (the failing checks, or why it cannot tell)
    schema_state: str = ""  # the schema check's state (up-to-date, expand-needed, contract-needed, ...); "": none
    expanded_not_contracted: bool | None = None  # None: the check cannot tell
    commands: list[str] = Field(default_factory=list)  # what ran
    seconds: float = 0.0


class CloudCheck(Msg):
    services: list[ServiceCloudCheck] = Field(default_factory=list)


# --- human control (updates) -------------------------------------------------------------------
# Where each command goes (the CLI routes `stackhop approve|resume ID` to the right workflow):
# * the Upgrade workflow (upgrade/<cloud>): pause, resume (a paused upgrade), abort — upgrade-wide;
# * a ServiceUpgrade workflow (service_workflow_id): approve, resume and abandon, each answering the
#   one decision that service waits for (its id: decision_id) — one service's own.
def service_workflow_id(upgrade_id: str, service: str) -> str:
    """The id of a service's child workflow: readers find it without asking the parent."""
    return f"{upgrade_id}/{service}"


def decision_id(service: str, step: str, n: int) -> str:
    """The one grammar of decisions, for every gate, check, batch and wave: ``keystone/validate#2``
    is the second decision asked about keystone's validate step."""
    return f"{service}/{step}#{n}"


def decision_service(decision: str) -> str:
    """The service a decision id belongs to ("" when ``decision`` is not such an id: a gate name)."""
    service, sep, rest = decision.partition("/")
    return service if sep and "#" in rest else ""


class PauseRequest(Msg):
    reason: str = ""
    by: str = ""


class ResumeRequest(Msg):
    by: str = ""


class ApproveRequest(Msg):
    gate: str  # the decision id (keystone/validate#2), or a gate's plan name while that gate waits
    by: str = ""


class AbortRequest(Msg):
    reason: str
    by: str = ""


class AbandonRequest(Msg):
    """End a rollback whose step waits for a decision, leaving the rest undone (reported)."""

    reason: str
    by: str = ""


class ControlAck(Msg):
    message: str = ""
