"""Several processes publishing one model name at once, on any store: what the registry's version
claims must survive (two publishers, two versions, each holding its own files)."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

from lakeloop.registry import Registry

MODEL = "raced"


def _publish(registry: Registry, n: int) -> int:
    return registry.publish(MODEL, f"weights of publisher {n}".encode(), {"publisher": n}).version


def publish_at_once(registry: Registry, publishers: int = 8) -> tuple[int, int]:
    """Start ``publishers`` processes that publish :data:`MODEL` together; check that each got a
    version of its own holding its own weights and metadata, committed and intact, and that
    ``latest`` is the highest. Returns (versions lost, versions shared by two publishers)."""
    before = registry.list_versions(MODEL)
    with ProcessPoolExecutor(publishers) as pool:
        got = list(pool.map(_publish, [registry] * publishers, range(publishers)))
    # Distinct numbers above the earlier ones (a number publishers fought over may be left unused).
    assert len(set(got)) == publishers and min(got) > max(before, default=0), got
    assert registry.list_versions(MODEL) == [*before, *sorted(got)]
    for n, number in enumerate(got):
        version = registry.resolve(MODEL, number)
        assert registry.read_weights(version) == f"weights of publisher {n}".encode()
        assert registry.read_metadata(version)["publisher"] == n
    assert registry.resolve(MODEL).version == max(got) and registry.leftover_versions(MODEL) == []
    return publishers - len(set(got)), len(got) - len(set(got))
