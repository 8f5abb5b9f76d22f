"""Service order: a DAG from ``depends_on``, with OpenStack's documented order as the default.

The upstream upgrade guides upgrade identity first, then placement, image, networking, compute,
block storage, and the rest. A service that omits ``depends_on`` depends on every service of an
earlier tier in the plan; one that states it gets exactly what it states. Services of one wave have
no dependency between them and may run in parallel.
"""

from __future__ import annotations

from model.plan import Service

TIERS: tuple[tuple[str, ...], ...] = (
    ("identity",),
    ("placement",),
    ("image",),
    ("network", "networking"),
    ("compute",),
    ("block-storage", "volume", "volumev3"),
)
KNOWN_TYPES = {
    "keystone": "identity",
    "placement": "placement",
    "glance": "image",
    "neutron": "network",
    "nova": "compute",
    "cinder": "block-storage",
    "heat": "orchestration",
    "horizon": "dashboard",
    "barbican": "key-manager",
    "octavia": "load-balancer",
    "designate": "dns",
    "swift": "object-store",
    "ironic": "baremetal",
    "manila": "shared-file-system",
}


def service_type(service: Service) -> str:
    return service.service_type or KNOWN_TYPES.get(service.name, service.name)


def tier(service: Service) -> int:
    st = service_type(service)
    for i, types in enumerate(TIERS):
        if st in types:
            return i
    return len(TIERS)  # "the rest"


def dependencies(services: list[Service]) -> dict[str, list[str]]:
    """Each service's dependencies, explicit or derived from the documented order."""
    deps: dict[str, list[str]] = {}
    for s in services:
        if s.depends_on is not None:
            deps[s.name] = list(s.depends_on)
        else:
            deps[s.name] = [o.name for o in services if tier(o) < tier(s)]
    return deps


class CycleError(ValueError):
    def __init__(self, cycle: list[str]):
        self.cycle = cycle
        super().__init__(" -> ".join(cycle))


def find_cycle(deps: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in deps.get(n, []):
            if state.get(d) == 1:
                return [*stack[stack.index(d) :], d]
            if d in deps and not state.get(d):
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in deps:
        if not state.get(n):
            found = visit(n)
            if found:
                return found
    return None


def waves(services: list[Service]) -> list[list[str]]:
    """Topological layers, in plan order within a layer. Raises CycleError."""
    deps = dependencies(services)
    cycle = find_cycle(deps)
    if cycle:
        raise CycleError(cycle)
    done: set[str] = set()
    result: list[list[str]] = []
    names = [s.name for s in services]
    while len(done) < len(names):
        layer = [n for n in names if n not in done and all(d in done for d in deps[n])]
        result.append(layer)
        done.update(layer)
    return result
