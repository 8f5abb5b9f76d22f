"""Issue 11: what the cloud lab costs — start, reset and memory, measured in one run.

Fresh cloud dir (every service set up: databases, Keystone registration, config, bootstrap at
2025.2, then its pods started), memory of each part, a reset of each service (its databases back to
the baseline dump, its pods restarted), a rolling swap to 2026.1 and back, ``down``, then a start
on the existing dir (no set-up). Direct mode (no Kubernetes; the Kubernetes figures are in
tests/cloud/test_cloud_k8s.py's measurements.json).

Run: ``.venv/bin/python -m bench.cloud_lab`` (its own dir, .lab/cloud-bench). Figures only: it
exits 0 whatever they are. Ratios are to the start of the whole cloud, measured in the same run.
"""

from __future__ import annotations

import time

from lab.openstack.cloud import SERVICES, CloudLab


def main() -> None:
    base = CloudLab().base.parent / "cloud-bench"
    CloudLab.load(base).down(purge=True)
    lab = CloudLab(base=base)
    rows: list[tuple[str, float]] = []
    try:
        timings = lab.up(SERVICES)
        start = timings["total"]
        rows.append(("start, fresh cloud dir (set-up of every service + pods ready)", start))
        rows += [(f"  {k}", v) for k, v in timings.items() if k != "total"]
        memory = lab.memory()
        t0 = time.monotonic()
        lab.save_baseline()
        rows.append(("baseline dump (every database)", time.monotonic() - t0))
        for service in SERVICES:
            rows.append((f"reset {service} (databases + pods)", lab.reset([service])))
        rows.append(("serve placement 2026.1 (rolling)", lab.serve("placement", "2026.1")))
        rows.append(("reset everything", lab.reset()))
        t0 = time.monotonic()
        lab.down()
        rows.append(("down", time.monotonic() - t0))
        again = CloudLab.load(base).up(SERVICES)["total"]
        rows.append(("start, existing cloud dir (no set-up)", again))
    finally:
        CloudLab.load(base).down()
    print(f"{'what':<66} {'seconds':>8} {'ratio':>6}")
    for what, seconds in rows:
        print(f"{what:<66} {seconds:8.1f} {seconds / start:6.2f}")
    print(f"\n{'memory (RSS, MiB; a pod counts its process group)':<66}")
    for part, mib in memory.items():
        print(f"  {part:<64} {mib:8.1f}")


if __name__ == "__main__":
    main()
