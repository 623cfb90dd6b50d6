"""The trigger queue and store on a real three-node Redis Cluster: schedule → claim → ack.

A script or MULTI whose keys span slots fails there (CROSSSLOT, or "non local key" for a
key built inside Lua), so this run proves the hash-tagged key layout end to end.
"""
from __future__ import annotations

from typing import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from bot.triggers.events import BehaviourEvent
from bot.triggers.queue import Job, RedisJobQueue
from bot.triggers.redis_store import RedisTriggerStore
from bot.triggers.store import BatchWrites, Instance, Reservation, SentMark
from tests.redis_cluster import RedisClusterNodes
from tests.redis_server import find_redis_server, redis_skipped

pytestmark = [pytest.mark.redis]


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    if find_redis_server() is None:
        if redis_skipped():
            pytest.skip("redis-server not installed and KEFU_SKIP_REDIS=1")
        pytest.fail("redis-server not found; tests marked 'redis' need it.")
    with RedisClusterNodes() as cluster:
        yield cluster


@pytest_asyncio.fixture
async def cluster_client(redis_cluster: RedisClusterNodes) -> AsyncIterator[object]:
    from redis.asyncio.cluster import RedisCluster

    client = RedisCluster(host=redis_cluster.host, port=redis_cluster.ports[0], decode_responses=True)
    await client.initialize()
    await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield client
    await client.aclose()


@pytest.mark.asyncio
async def test_redis_cluster_trigger_queue_and_store_schedule_claim_ack(cluster_client):
    queue = RedisJobQueue(prefix="kefu:triggers", client=cluster_client)
    store = RedisTriggerStore(prefix="kefu:triggers", client=cluster_client)
    # schedule
    assert await store.add_events([BehaviourEvent("e1", "cart_item_added", "c1", 10.0),
                                   BehaviourEvent("e2", "cart_item_added", "c2", 10.0)]) == []
    for n, customer in enumerate(("c1", "c2")):
        assert await store.create_instance(Instance(f"i{n}", customer, "cart", 10.0, customer))
        assert await queue.enqueue(Job(f"cart:i{n}:remind", 20.0, {"instance": f"i{n}", "customer": customer}))
    assert await queue.enqueue_many([Job("later", 99.0)]) == 1
    # claim
    claimed = await queue.claim(30.0, 10, lease_s=60.0)
    assert [j.id for j in claimed] == ["cart:i0:remind", "cart:i1:remind"]
    assert await queue.size() == {"due": 1, "in_flight": 2}
    keys = [(j.data["instance"], j.data["customer"], f"send-{j.id}") for j in claimed]
    reads = await store.dispatch_reads(keys)
    assert [s.instance.customer_id for s in reads.snapshots] == ["c1", "c2"]
    assert await store.reserve_sends([Reservation(sid, cid, "cart", "remind", "A", "utter_x", False)
                                      for _, cid, sid in keys], 30.0, 1, 3) == ["reserved", "reserved"]
    assert await store.commit_batch(BatchWrites(
        sent=[SentMark(sid, 31.0, "test", cid, "cart", "remind", "A") for _, cid, sid in keys],
        completed=[iid for iid, _, _ in keys])) == 2
    # ack
    await queue.ack_many([j.id for j in claimed])
    assert await queue.size() == {"due": 1, "in_flight": 0}
    assert await queue.cancel(["later"]) == 1
    assert [r.status for r in await store.sends_for("c1")] == ["sent"]
    assert (await store.get_instance("i0")).status == "completed"
    assert await store.update_profile("c1", {"points": 1}, 32.0) == {"points": 1, "opted_out": False}
