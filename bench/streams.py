"""Data streams: ``send_bytes`` throughput (8 MiB) and ``send_text`` latency (1 KiB).

For each contender (lkrtc-trio, official asyncio SDK) a receiver process and a
sender process of that contender join a fresh room (one room and one pair of
processes per round). The receiver registers its stream handlers, sees the
sender and says "ready" over the data channel (``publish_data``, topic
``ctl``; repeated every second until the byte stream opens, see
bench/data.py); the sender waits for it, then runs two phases.

Byte stream, "send_bytes 8 MiB": one payload of ``SIZE`` = 8 MiB of
pseudo-random bytes (``random.Random(seed).randbytes``: incompressible, so
neither SDK's default compression changes the bytes on the wire; both
processes derive it from the seed the parent passes, so the receiver knows
the SHA-256 to expect without any extra message) sent with ``await
send_bytes(data, topic="bench", name="blob")``. Receiving, each SDK's natural
way: lkrtc-trio registers an async handler with
``room.register_byte_stream_handler("bench", ...)`` that does ``await
reader.read_all()``; the official SDK registers a (sync) handler with
``room.register_byte_stream_handler("bench", ...)`` that starts a task which
``async for chunk in reader`` collects the chunks and joins them. The
receiver checks the length and the SHA-256 of what it got (a mismatch, or no
complete payload within ``TIMEOUT``, fails the run), then takes its
timestamp and says "bytes ok".

* "MB/s delivered" = 8 MiB / 1e6 / (receiver's ``time.time()`` once the
  payload is complete and verified - sender's ``time.time()`` just before
  ``send_bytes``). Both processes run on the same machine, so they read the
  same clock (as in bench/data.py).
* "loop-thread CPU ms/MB, sent": the sender's ``time.thread_time()`` on its
  event-loop thread from just before ``send_bytes`` until the receiver's
  "bytes ok" arrived (so work the SDK still does on the loop after
  ``send_bytes`` returned is in it), per 1e6 bytes.
* "loop-thread CPU ms/MB, received": the receiver's, from when it said
  "ready" to the verified payload (the hashing of 8 MiB is in it, the same for
  both). See bench/data.py for what loop-thread CPU includes and what each
  SDK does off the loop thread.

Text stream, "send_text 1 KiB": ``WARM_TEXTS`` + ``TEXTS`` texts, one at a
time, each exactly 1024 bytes of UTF-8 (its sequence number, some 2-, 3- and
4-byte characters, then ASCII), sent with ``await send_text(text,
topic="lat")``. The receiver reads each whole text (lkrtc-trio: async handler,
``await reader.read_all()``; official: sync handler starting a task that
``await reader.read_all()``), checks it equals the expected text for its
sequence number, takes ``time.time()`` and answers with a short
``publish_data`` on ``ctl``; the sender waits for that answer before the next
send. Latency of text i = receiver's timestamp - sender's ``time.time()``
just before ``send_text`` (one way, same machine and clock, like
bench/data.py; the answer only paces the sends). "p50 ms, send to read" is
the median over the ``TEXTS`` measured texts (the first ``WARM_TEXTS`` are a
warm-up). The child's JSON also has the round trips (to the answer) as a
cross-check.

Child mode: ``python -m bench.streams child {lkrtc|official} {send|recv} URL
ROOM SEED``; each prints one JSON line. ``python -m bench.streams`` runs one
round per contender and prints the details. ``run(url)``: 5 rounds per
contender, interleaved (round r of lkrtc-trio, then round r of the official
SDK), each a fresh room and fresh processes; one sample per row per round.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import statistics
import sys
import time
import uuid
from functools import partial
from typing import Any

from bench._common import ROUNDS, Row, retried, row
from bench.data import (
    CTL,
    GONE_TIMEOUT,
    SEE_TIMEOUT,
    CpuMeter,
    Lost,
    OfficialControl,
    lkrtc_announce,
    lkrtc_control,
    lkrtc_wait_gone,
    official_announce,
    official_see,
    official_wait_gone,
    pair,
)

SCENARIO = "Data streams"
BYTES_CASE = "send_bytes 8 MiB"
TEXT_CASE = "send_text 1 KiB, 50 sequential"
SIZE = 8 * 2**20
TEXT_BYTES = 1024
TEXTS = 50
WARM_TEXTS = 5
BYTE_TOPIC, TEXT_TOPIC = "bench", "lat"
TIMEOUT = 90.0  # seconds for the byte stream, and for the whole text phase
MB = SIZE / 1e6


def payload(seed: int) -> bytes:
    return random.Random(seed).randbytes(SIZE)


def text(i: int) -> str:
    """Text number ``i``: exactly ``TEXT_BYTES`` bytes of UTF-8."""
    head = f"{i:04d} Grüße, naïve café — 日本語のテキスト ☕ 😀 ∑ "
    return head + "x" * (TEXT_BYTES - len(head.encode()))


def text_index(got: str) -> int:
    """The sequence number of a received text; raises Lost if it is not one of ours."""
    try:
        i = int(got[:4])
    except ValueError:
        i = -1
    if not 0 <= i < WARM_TEXTS + TEXTS or got != text(i):
        raise Lost(f"an unexpected text of {len(got.encode())} bytes: {got[:20]!r}")
    return i


class Received:
    """What a receiver got, filled in by its stream handlers."""

    def __init__(self, seed: int) -> None:
        self.digest = hashlib.sha256(payload(seed)).digest()
        self.opened = False  # the byte stream reached the handler
        self.bytes_done = 0.0
        self.text_done = [0.0] * (WARM_TEXTS + TEXTS)
        self.failure: list[BaseException] = []

    def check_bytes(self, data: bytes) -> None:
        if len(data) != SIZE or hashlib.sha256(data).digest() != self.digest:
            raise Lost(f"the byte stream delivered {len(data)} bytes that do not match")
        self.bytes_done = time.time()

    def check_text(self, got: str) -> int:
        i = text_index(got)
        if self.text_done[i]:
            raise Lost(f"text {i} arrived twice")
        self.text_done[i] = time.time()
        return i


# -- lkrtc-trio --------------------------------------------------------------------------


async def lkrtc_sender(url: str, room: str, seed: int) -> dict[str, Any]:
    import trio

    import lkrtc_trio as lk
    from lkrtc_trio.testing import mint_token

    data = payload(seed)
    texts = [text(i) for i in range(WARM_TEXTS + TEXTS)]
    out: dict[str, Any] = {}
    async with lk.open_room(url, mint_token("send", room)) as r:
        lp = r.local_participant
        with r.events(max_buffer=1000) as events:
            with trio.fail_after(SEE_TIMEOUT):
                await r.wait_for_participant("recv")
                await lkrtc_control(events, b"ready")
            meter, t0 = CpuMeter(), time.time()
            await lp.send_bytes(data, topic=BYTE_TOPIC, name="blob")
            t1 = time.time()
            with trio.fail_after(TIMEOUT):
                await lkrtc_control(events, b"bytes ok")
            out["bytes"] = {"start": t0, "sent": t1, **meter.result()}
            starts, rtts = [], []
            with trio.fail_after(TIMEOUT):
                for i, t in enumerate(texts):
                    t0 = time.time()
                    await lp.send_text(t, topic=TEXT_TOPIC)
                    await lkrtc_control(events, f"t {i}".encode())
                    starts.append(t0)
                    rtts.append(time.time() - t0)
            out["text"] = {"start": starts, "rtt": rtts}
    return out


async def lkrtc_receiver(url: str, room: str, seed: int) -> dict[str, Any]:
    import trio

    import lkrtc_trio as lk
    from lkrtc_trio.testing import mint_token

    got = Received(seed)
    bytes_done, texts_done = trio.Event(), trio.Event()
    out: dict[str, Any] = {}
    async with lk.open_room(url, mint_token("recv", room)) as r:
        lp = r.local_participant

        async def on_bytes(reader: lk.ByteStreamReader, identity: str) -> None:
            got.opened = True
            try:
                got.check_bytes(await reader.read_all())
            except Exception as exc:
                got.failure.append(exc)
            bytes_done.set()

        async def on_text(reader: lk.TextStreamReader, identity: str) -> None:
            try:
                i = got.check_text(await reader.read_all())
                await lp.publish_data(f"t {i}".encode(), topic=CTL)
                if all(got.text_done):
                    texts_done.set()
            except Exception as exc:
                got.failure.append(exc)
                texts_done.set()

        r.register_byte_stream_handler(BYTE_TOPIC, on_bytes)
        r.register_text_stream_handler(TEXT_TOPIC, on_text)
        with trio.fail_after(SEE_TIMEOUT):
            await r.wait_for_participant("send")
        meter = CpuMeter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lkrtc_announce, lp, b"ready", lambda: got.opened)
            with trio.move_on_after(TIMEOUT):
                await bytes_done.wait()
            nursery.cancel_scope.cancel()
        if got.failure:
            raise got.failure[0]
        if not got.bytes_done:
            raise Lost(f"the byte stream did not complete within {TIMEOUT} s")
        out["bytes"] = {"done": got.bytes_done, **meter.result()}
        await lp.publish_data(b"bytes ok", topic=CTL)
        with trio.move_on_after(TIMEOUT):
            await texts_done.wait()
        if got.failure:
            raise got.failure[0]
        if not all(got.text_done):
            raise Lost(f"{sum(1 for t in got.text_done if t)} texts arrived")
        out["text"] = {"done": got.text_done}
        await lkrtc_wait_gone(r, "send", GONE_TIMEOUT)
    return out


# -- official SDK -------------------------------------------------------------------------


async def official_sender(url: str, room: str, seed: int) -> dict[str, Any]:
    import asyncio

    from livekit import rtc

    from lkrtc_trio.testing import mint_token

    data = payload(seed)
    texts = [text(i) for i in range(WARM_TEXTS + TEXTS)]
    out: dict[str, Any] = {}
    r = rtc.Room()
    ctl = OfficialControl(r)
    await r.connect(url, mint_token("send", room))
    try:
        lp = r.local_participant
        await official_see(r, "recv", SEE_TIMEOUT)
        await ctl.wait(b"ready", SEE_TIMEOUT)
        meter, t0 = CpuMeter(), time.time()
        await lp.send_bytes(data, topic=BYTE_TOPIC, name="blob")
        t1 = time.time()
        await ctl.wait(b"bytes ok", TIMEOUT)
        out["bytes"] = {"start": t0, "sent": t1, **meter.result()}
        starts, rtts = [], []

        async def texts_phase() -> None:
            for i, t in enumerate(texts):
                t0 = time.time()
                await lp.send_text(t, topic=TEXT_TOPIC)
                await ctl.wait(f"t {i}".encode(), TIMEOUT)
                starts.append(t0)
                rtts.append(time.time() - t0)

        await asyncio.wait_for(texts_phase(), TIMEOUT)
        out["text"] = {"start": starts, "rtt": rtts}
    finally:
        await r.disconnect()
    return out


async def official_receiver(url: str, room: str, seed: int) -> dict[str, Any]:
    import asyncio

    from livekit import rtc

    from lkrtc_trio.testing import mint_token

    got = Received(seed)
    bytes_done, texts_done = asyncio.Event(), asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    out: dict[str, Any] = {}
    r = rtc.Room()

    def spawn(coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def read_bytes(reader: Any) -> None:
        try:
            chunks = [chunk async for chunk in reader]
            got.check_bytes(b"".join(chunks))
        except Exception as exc:
            got.failure.append(exc)
        bytes_done.set()

    async def read_text(reader: Any) -> None:
        try:
            i = got.check_text(await reader.read_all())
            await r.local_participant.publish_data(f"t {i}".encode(), topic=CTL)
            if all(got.text_done):
                texts_done.set()
        except Exception as exc:
            got.failure.append(exc)
            texts_done.set()

    def on_bytes(reader: Any, identity: str) -> None:
        got.opened = True
        spawn(read_bytes(reader))

    def on_text(reader: Any, identity: str) -> None:
        spawn(read_text(reader))

    r.register_byte_stream_handler(BYTE_TOPIC, on_bytes)
    r.register_text_stream_handler(TEXT_TOPIC, on_text)
    await r.connect(url, mint_token("recv", room))
    try:
        lp = r.local_participant
        await official_see(r, "send", SEE_TIMEOUT)
        meter = CpuMeter()
        announce = asyncio.create_task(official_announce(lp, b"ready", lambda: got.opened))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(bytes_done.wait(), TIMEOUT)
        announce.cancel()
        if got.failure:
            raise got.failure[0]
        if not got.bytes_done:
            raise Lost(f"the byte stream did not complete within {TIMEOUT} s")
        out["bytes"] = {"done": got.bytes_done, **meter.result()}
        await lp.publish_data(b"bytes ok", topic=CTL)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(texts_done.wait(), TIMEOUT)
        if got.failure:
            raise got.failure[0]
        if not all(got.text_done):
            raise Lost(f"{sum(1 for t in got.text_done if t)} texts arrived")
        out["text"] = {"done": got.text_done}
        await official_wait_gone(r, "send", GONE_TIMEOUT)
    finally:
        await r.disconnect()
    return out


# -- processes ----------------------------------------------------------------------------


def child(contender: str, role: str, url: str, room: str, seed: int) -> None:
    if contender == "lkrtc":
        import trio

        fn = lkrtc_sender if role == "send" else lkrtc_receiver
        out = trio.run(fn, url, room, seed)
    else:
        import asyncio

        ofn = official_sender if role == "send" else official_receiver
        out = asyncio.run(ofn(url, room, seed))
    print(json.dumps(out), flush=True)


def measure(url: str, contender: str, tag: str) -> dict[str, float]:
    room = f"streams-{contender}-{tag}-{uuid.uuid4().hex[:8]}"
    seed = random.randrange(2**32)
    sent, got = pair("bench.streams", contender, url, room, [str(seed)], timeout=300)
    sb, gb = sent["bytes"], got["bytes"]
    measured = range(WARM_TEXTS, WARM_TEXTS + TEXTS)
    latency = [got["text"]["done"][i] - sent["text"]["start"][i] for i in measured]
    rtt = [sent["text"]["rtt"][i] for i in measured]
    return {
        "MB/s": MB / (gb["done"] - sb["start"]),
        "send_loop_ms_per_MB": sb["loop_cpu"] / MB * 1e3,
        "recv_loop_ms_per_MB": gb["loop_cpu"] / MB * 1e3,
        "text_p50_ms": statistics.median(latency) * 1e3,
        # diagnostics (not rows)
        "send_bytes_returned_s": sb["sent"] - sb["start"],
        "delivered_s": gb["done"] - sb["start"],
        "send_cpu_ms_per_MB": sb["cpu"] / MB * 1e3,
        "recv_cpu_ms_per_MB": gb["cpu"] / MB * 1e3,
        "text_p90_ms": statistics.quantiles(latency, n=10)[8] * 1e3,
        "text_rtt_p50_ms": statistics.median(rtt) * 1e3,
    }


#: (case, metric, key in measure()'s result, better), one row per contender each
METRICS = [
    (BYTES_CASE, "MB/s delivered", "MB/s", "higher"),
    (BYTES_CASE, "loop-thread CPU ms/MB, sent", "send_loop_ms_per_MB", "lower"),
    (BYTES_CASE, "loop-thread CPU ms/MB, received", "recv_loop_ms_per_MB", "lower"),
    (TEXT_CASE, "p50 ms, send to read", "text_p50_ms", "lower"),
]


def run(url: str, rounds: int = ROUNDS) -> list[Row]:
    contenders = ("lkrtc", "official")
    samples: dict[tuple[str, str], list[float]] = {}
    for i in range(rounds):
        for contender in contenders:
            res = retried(
                f"streams {contender} round {i}", partial(measure, url, contender, str(i))
            )
            for _case, _metric, key, _better in METRICS:
                samples.setdefault((key, contender), []).append(res[key])
    return [
        row(SCENARIO, case, contender, metric, better, samples[key, contender])
        for case, metric, key, better in METRICS
        for contender in contenders
    ]


def main() -> None:
    """``python -m bench.streams [CONTENDER...]``: one round each, details as JSON."""
    from lkrtc_trio.testing import LocalServer, install_server

    contenders = sys.argv[1:] or ["lkrtc", "official"]
    results: dict[str, Any] = {}
    with LocalServer(binary=install_server()) as info:
        for contender in contenders:
            results[contender] = measure(info.url, contender, "main")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    else:
        main()
