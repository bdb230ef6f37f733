"""Across the nodes of a LiveKit cluster (two livekit-server nodes sharing one
Redis: ``LocalCluster``), and the very same tests against a single server.

The ``topology`` parameter decides where the two participants connect: on a
single server both use its URL; in the cluster participant ``a`` signals
through node 0 and ``b`` through node 1 (the room lives on one of them, and
the other relays). Every test runs on both backends and both topologies.

Failover (a node stopped or killed while rooms live on both) has its own
cluster per test, in tests/test_cluster_failover.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import anyio
import numpy as np
import pytest

import lkrtc_trio as lk
from lkrtc_trio import api
from lkrtc_trio.testing import ClusterInfo, ServerInfo, mint_token

from .helpers import SEE, next_event, wait_released
from .tones import RATE, dominant, play

pytestmark = pytest.mark.integration

STEP = 20  # seconds for any single exchange


@dataclass(frozen=True)
class Topology:
    """Where participant ``a`` and ``b`` connect, and each side's server API."""

    name: str
    nodes: tuple[ServerInfo, ServerInfo]  # a's node, b's node (the same one twice if single)

    @property
    def urls(self) -> tuple[str, str]:
        return (self.nodes[0].url, self.nodes[1].url)

    def token(self, identity: str, room: str) -> str:
        node = self.nodes[0]
        return mint_token(identity, room, api_key=node.api_key, api_secret=node.api_secret)

    def api(self, side: int) -> api.LiveKitAPI:
        node = self.nodes[side]
        return api.LiveKitAPI(node.http_url, node.api_key, node.api_secret)


@pytest.fixture(params=["single", "cluster"])
def topology(request: pytest.FixtureRequest, livekit_server: ServerInfo) -> Topology:
    if request.param == "single":
        return Topology("single", (livekit_server, livekit_server))
    cluster: ClusterInfo = request.getfixturevalue("livekit_cluster")
    assert len(cluster.nodes) == 2 and cluster.nodes[0].url != cluster.nodes[1].url
    return Topology("cluster", (cluster.nodes[0], cluster.nodes[1]))


@asynccontextmanager
async def pair(topo: Topology, room: str) -> AsyncIterator[tuple[lk.Room, lk.Room]]:
    """``a`` through the first node, ``b`` through the second; both see each
    other; nothing is left afterwards."""
    async with (
        lk.open_room(topo.urls[0], topo.token("a", room)) as a,
        lk.open_room(topo.urls[1], topo.token("b", room)) as b,
    ):
        with anyio.fail_after(SEE):
            await a.wait_for_participant("b")
            await b.wait_for_participant("a")
        assert a.sid == b.sid, "one room, whichever node each one signals through"
        yield a, b
    await wait_released()


async def test_rpc_both_ways(topology: Topology, livekit_room_name: str) -> None:
    async with pair(topology, livekit_room_name) as (a, b):
        for me, room in (("a", a), ("b", b)):
            room.local_participant.register_rpc_method(
                "who", lambda d, me=me: f"{me} answers {d.caller_identity}: {d.payload}"
            )
        with anyio.fail_after(STEP):
            assert (
                await a.local_participant.perform_rpc(
                    destination_identity="b", method="who", payload="1"
                )
                == "b answers a: 1"
            )
            assert (
                await b.local_participant.perform_rpc(
                    destination_identity="a", method="who", payload="2"
                )
                == "a answers b: 2"
            )
            # many at once, both ways: every answer pairs with its call
            got: dict[tuple[str, int], str] = {}

            async def call(src: lk.Room, dst: str, i: int) -> None:
                got[(dst, i)] = await src.local_participant.perform_rpc(
                    destination_identity=dst, method="who", payload=str(i)
                )

            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(call, a, "b", i)
                    tg.start_soon(call, b, "a", i)
        assert got == {
            (dst, i): f"{dst} answers {'a' if dst == 'b' else 'b'}: {i}"
            for dst in ("a", "b")
            for i in range(20)
        }
        with pytest.raises(lk.RpcError) as err:
            await a.local_participant.perform_rpc(
                destination_identity="b", method="nobody", payload=""
            )
        assert err.value.code == lk.RpcError.ErrorCode.UNSUPPORTED_METHOD


async def test_1000_reliable_packets_arrive_in_order(
    topology: Topology, livekit_room_name: str
) -> None:
    count = 1000
    async with pair(topology, livekit_room_name) as (a, b):
        received: list[int] = []
        with b.events(max_buffer=count + 100) as events:
            for i in range(count):
                await a.local_participant.publish_data(str(i).encode(), topic="seq")
            with anyio.fail_after(STEP):
                async for event in events:
                    if isinstance(event, lk.DataReceived) and event.topic == "seq":
                        assert event.participant_identity == "a"
                        received.append(int(event.payload))
                        if len(received) == count:
                            break
        assert received == list(range(count))


async def test_a_440_hz_tone_is_heard(topology: Topology, livekit_room_name: str) -> None:
    async with pair(topology, livekit_room_name) as (a, b), AsyncExitStack() as stack:
        with b.events() as events:
            async with lk.AudioSource(RATE, 1) as source:
                track = lk.LocalAudioTrack.create_audio_track("tone", source)
                # the track is closed (its native handle released) on leaving
                stack.push_async_callback(track.aclose)
                await a.local_participant.publish_track(
                    track, lk.TrackPublishOptions(source=lk.TrackSource.SOURCE_MICROPHONE)
                )
                got = await next_event(
                    events,
                    lk.TrackSubscribed,
                    lambda e: e.track.kind == lk.TrackKind.KIND_AUDIO,
                    limit=STEP,
                )
                assert got.participant.identity == "a"
                stream = lk.AudioStream(got.track, sample_rate=RATE, num_channels=1, capacity=500)
                chunks: list[np.ndarray] = []
                async with anyio.create_task_group() as tg:
                    tg.start_soon(play, source, [(440.0, float("inf"))])
                    with anyio.fail_after(STEP):
                        async for frame in stream:
                            samples = frame.to_numpy()[:, 0]
                            if chunks or np.abs(samples).max() > 1000:  # from the first sound
                                chunks.append(samples.copy())
                            if sum(map(len, chunks)) >= RATE * 1.5:
                                break
                    tg.cancel_scope.cancel()
                stream.close()
                assert stream.dropped_frames == 0
                heard = np.concatenate(chunks)[RATE // 4 :]  # past the codec's ramp-up
                assert abs(dominant(heard) - 440) <= 10


async def test_text_and_byte_streams(topology: Topology, livekit_room_name: str) -> None:
    text = "héllo across nodes 🎉 " * 2000  # several chunks
    blob = hashlib.sha256(b"seed").digest() * 4000  # 128 KiB
    async with pair(topology, livekit_room_name) as (a, b):
        with b.text_streams("notes") as texts, a.byte_streams("files") as files:
            sent_text = await a.local_participant.send_text(text, topic="notes")
            sent_blob = await b.local_participant.send_bytes(blob, name="blob.bin", topic="files")
            with anyio.fail_after(STEP):
                text_reader = await texts.receive()
                assert text_reader.info.stream_id == sent_text.stream_id
                assert text_reader.participant_identity == "a"
                assert await text_reader.read_all() == text
                blob_reader = await files.receive()
                assert blob_reader.info.stream_id == sent_blob.stream_id
                assert blob_reader.info.name == "blob.bin"
                assert blob_reader.participant_identity == "b"
                assert await blob_reader.read_all() == blob


async def test_a_room_created_through_one_node_is_joined_through_the_other(
    topology: Topology, livekit_room_name: str
) -> None:
    """The room is created with the first node's server API, on that node
    (``node_id``), with metadata; a participant joins through the second
    node, and the second node's API sees it there."""
    async with topology.api(0) as first:
        created = await first.room.create_room(
            api.CreateRoomRequest(
                name=livekit_room_name,
                metadata="made through node 0",
                empty_timeout=60,
                node_id=topology.nodes[0].node_id or "",
            )
        )
    assert created.sid and created.name == livekit_room_name
    async with lk.open_room(topology.urls[1], topology.token("b", livekit_room_name)) as b:
        assert (b.sid, b.name, b.metadata) == (
            created.sid,
            livekit_room_name,
            "made through node 0",
        )
        async with topology.api(1) as second:
            listed = await second.room.list_participants(
                api.ListParticipantsRequest(room=livekit_room_name)
            )
            assert [p.identity for p in listed.participants] == ["b"]
            rooms = await second.room.list_rooms(api.ListRoomsRequest(names=[livekit_room_name]))
            assert [(r.sid, r.metadata) for r in rooms.rooms] == [
                (created.sid, "made through node 0")
            ]
        async with lk.open_room(topology.urls[0], topology.token("a", livekit_room_name)) as a:
            assert a.sid == created.sid
            with anyio.fail_after(SEE):
                await b.wait_for_participant("a")
    async with topology.api(1) as second:
        await second.room.delete_room(api.DeleteRoomRequest(room=livekit_room_name))
        left = await second.room.list_rooms(api.ListRoomsRequest(names=[livekit_room_name]))
        assert list(left.rooms) == []
    await wait_released()
