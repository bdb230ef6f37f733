"""lkrtc_trio.api: tokens, Twirp error mapping and the server API.

Rules: tokens and error mapping are tested without I/O (bytes and claims);
the transport with ``httpx.MockTransport``; every call with an observable
effect against the real livekit-server (joined rooms see what the API did).
Every wait is bounded with ``fail_after``; async tests run on trio and asyncio.
"""

from __future__ import annotations

import gc
import json
import pickle
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any

import anyio
import httpx
import jwt
import pytest

import lkrtc_trio as lk
from lkrtc_trio import api
from lkrtc_trio.api._errors import twirp_error
from lkrtc_trio.api._twirp import CALL_TOKEN_TTL, error_from_response, http_url
from lkrtc_trio.testing import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    ServerInfo,
    free_port,
    mint_token,
    test_host,
)

from .helpers import next_event, wait_released

# The dev server's secret ("secret") is shorter than PyJWT likes; it says so.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.InsecureKeyLengthWarning")

KEY = "unit-key"
SECRET = "unit-secret-long-enough-for-hs256-0123456789"
ENV = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")


@pytest.fixture(autouse=True)
def _no_livekit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def payload_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def full_token() -> api.AccessToken:
    return (
        api.AccessToken(KEY, SECRET)
        .with_identity("alice")
        .with_name("Alice")
        .with_metadata("meta")
        .with_attributes({"a": "1"})
        .with_kind("agent")
        .with_ttl(timedelta(minutes=5))
        .with_grants(
            api.VideoGrants(
                room_join=True,
                room="r1",
                can_publish_sources=["microphone", "camera"],
                can_update_own_metadata=True,
                hidden=False,
            )
        )
        .with_sip_grants(api.SIPGrants(call=True))
        .with_agent_grants(api.AgentGrants(simulation_admin=True))
        .with_inference_grants(api.InferenceGrants(perform=True))
        .with_observability_grants(api.ObservabilityGrants(write=True))
        .with_sha256("ab12")
        .with_room_preset("preset")
        .with_room_config(
            api.RoomConfiguration(
                max_participants=7,
                empty_timeout=33,
                metadata="from-token",
                agents=[api.RoomAgentDispatch(agent_name="helper")],
            )
        )
    )


# --------------------------------------------------------------------------- tokens


def test_token_claims_are_camel_case_with_expiry() -> None:
    before = int(time.time())
    token = full_token().to_jwt()
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "HS256", "typ": "JWT"}
    claims = payload_of(token)
    assert before <= claims["nbf"] <= int(time.time())
    assert claims["exp"] - claims["nbf"] == 300
    assert claims == {
        "iss": KEY,
        "sub": "alice",
        "nbf": claims["nbf"],
        "exp": claims["exp"],
        "name": "Alice",
        "metadata": "meta",
        "attributes": {"a": "1"},
        "kind": "agent",
        "sha256": "ab12",
        "roomPreset": "preset",
        "video": {
            "roomJoin": True,
            "room": "r1",
            "canPublish": True,
            "canSubscribe": True,
            "canPublishData": True,
            "canPublishSources": ["microphone", "camera"],
            "canUpdateOwnMetadata": True,
            "hidden": False,
        },
        "sip": {"admin": False, "call": True},
        "agent": {
            "admin": False,
            "simulationAdmin": True,
            "databaseAdmin": False,
            "dispatchAdmin": False,
        },
        "inference": {"perform": True},
        "observability": {"write": True},
        # protobuf's JSON mapping, as livekit-server's protojson reads it
        "roomConfig": {
            "maxParticipants": 7,
            "emptyTimeout": 33,
            "metadata": "from-token",
            "agents": [{"agentName": "helper"}],
        },
    }


def test_token_defaults_leave_unset_claims_out() -> None:
    token = api.AccessToken(KEY, SECRET)
    assert token.ttl == api.DEFAULT_TTL == timedelta(hours=6)
    claims = payload_of(token.to_jwt())
    assert set(claims) == {"iss", "nbf", "exp"}
    assert claims["exp"] - claims["nbf"] == 6 * 3600


def test_token_round_trip_gives_the_same_claims() -> None:
    token = full_token()
    claims = api.TokenVerifier(KEY, SECRET).verify(token.to_jwt())
    assert claims == token.claims
    assert claims.video is not None and claims.video.can_publish_sources == ("microphone", "camera")
    assert claims.room_config is not None and claims.room_config.max_participants == 7
    bare = api.TokenVerifier(KEY, SECRET).verify(api.AccessToken(KEY, SECRET).to_jwt())
    assert bare == api.Claims()


def test_room_config_is_copied() -> None:
    config = api.RoomConfiguration(metadata="before")
    token = api.AccessToken(KEY, SECRET).with_room_config(config)
    config.metadata = "after"
    assert payload_of(token.to_jwt())["roomConfig"] == {"metadata": "before"}


def test_grants_are_frozen_and_typed() -> None:
    grants = api.VideoGrants(room_join=True, room="r")
    with pytest.raises(AttributeError):
        grants.room = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        api.VideoGrants(can_publish_sources="camera")
    with pytest.raises(TypeError):
        api.VideoGrants(True)  # type: ignore[call-arg]  # keyword-only
    assert api.VideoGrants(can_publish_sources=["camera"]).can_publish_sources == ("camera",)


def test_token_input_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="api_key must be set"):
        api.AccessToken("", SECRET)
    with pytest.raises(ValueError, match="LIVEKIT_API_SECRET"):
        api.AccessToken(KEY)
    with pytest.raises(ValueError, match="identity must be set"):
        api.AccessToken(KEY, SECRET).with_grants(api.VideoGrants(room_join=True, room="r")).to_jwt()
    with pytest.raises(ValueError, match="room must be set"):
        api.AccessToken(KEY, SECRET).with_identity("a").with_grants(
            api.VideoGrants(room_join=True)
        ).to_jwt()
    for ttl in (timedelta(0), -1.0, 0):
        with pytest.raises(ValueError):
            api.AccessToken(KEY, SECRET).with_ttl(ttl)
    with pytest.raises(ValueError):
        api.TokenVerifier(KEY, SECRET, leeway=-1)
    with pytest.raises(ValueError, match="LIVEKIT_API_KEY"):
        api.TokenVerifier()
    monkeypatch.setenv("LIVEKIT_API_KEY", KEY)
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
    token = api.AccessToken().with_identity("env").with_ttl(60).to_jwt()
    assert api.TokenVerifier().verify(token).identity == "env"
    assert SECRET not in repr(api.AccessToken()) and SECRET not in repr(api.TokenVerifier())


def _at(offset: float, token: api.AccessToken, monkeypatch: pytest.MonkeyPatch) -> str:
    """``token`` signed as if the clock were ``offset`` seconds off."""
    real = time.time
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: real() + offset)
        return token.to_jwt()


def _refused(verifier: api.TokenVerifier, token: str) -> api.TokenErrorReason:
    with pytest.raises(api.TokenError) as info:
        verifier.verify(token)
    for part in token.split("."):
        assert not part or part not in str(info.value)
    return info.value.reason


def test_verify_refuses_bad_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = api.TokenVerifier(KEY, SECRET)
    minute = api.AccessToken(KEY, SECRET).with_identity("a").with_ttl(60)
    R = api.TokenErrorReason
    wrong_secret = api.AccessToken(KEY, SECRET + "x").with_identity("a").to_jwt()
    assert _refused(verifier, wrong_secret) is R.BAD_SIGNATURE
    assert _refused(verifier, _at(-3600, minute, monkeypatch)) is R.EXPIRED
    assert _refused(verifier, _at(3600, minute, monkeypatch)) is R.NOT_YET_VALID
    other_key = api.AccessToken("other", SECRET).to_jwt()
    assert _refused(verifier, other_key) is R.WRONG_ISSUER
    assert _refused(verifier, jwt.encode({"iss": KEY}, SECRET)) is R.MISSING_CLAIM
    assert _refused(verifier, jwt.encode({"exp": time.time() + 60}, SECRET)) is R.MISSING_CLAIM
    assert _refused(verifier, "not-a-token") is R.MALFORMED
    exp = int(time.time()) + 60
    hs512 = jwt.encode({"iss": KEY, "exp": exp}, SECRET, algorithm="HS512")
    assert _refused(verifier, hs512) is R.MALFORMED
    for bad in (
        {"video": {"roomJoin": "yes"}},
        {"video": ["roomJoin"]},
        {"attributes": {"a": 1}},
        {"name": 5},
        {"roomConfig": {"maxParticipants": "lots"}},
        {"video": {"canPublishSources": "camera"}},
    ):
        token = jwt.encode({"iss": KEY, "exp": exp, **bad}, SECRET)
        assert _refused(verifier, token) is R.MALFORMED, bad
    # within the leeway (1 minute by default), and claims of a newer server ignored
    expired_30s_ago = _at(-90, minute, monkeypatch)
    assert verifier.verify(expired_30s_ago).identity == "a"
    assert _refused(api.TokenVerifier(KEY, SECRET, leeway=0), expired_30s_ago) is R.EXPIRED
    newer = {"iss": KEY, "exp": exp, "video": {"roomList": True, "future": 1}, "future": {}}
    assert api.TokenVerifier(KEY, SECRET).verify(jwt.encode(newer, SECRET)) == api.Claims(
        video=api.VideoGrants(room_list=True)
    )
    error = api.TokenError("x", R.EXPIRED)
    assert pickle.loads(pickle.dumps(error)).reason is R.EXPIRED


def test_mint_token_is_an_access_token() -> None:
    token = mint_token("bob", "r9", name="Bob", kind="agent", room_admin=True, ttl=120)
    claims = api.TokenVerifier(DEFAULT_API_KEY, DEFAULT_API_SECRET).verify(token)
    assert claims == api.Claims(
        identity="bob",
        name="Bob",
        kind="agent",
        video=api.VideoGrants(
            room_join=True, room="r9", room_admin=True, can_update_own_metadata=True, hidden=False
        ),
    )
    raw = payload_of(token)
    assert raw["exp"] - raw["nbf"] == 130  # nbf backdated 10 s for clock skew


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("not_found", api.NotFoundError),
        ("already_exists", api.AlreadyExistsError),
        ("invalid_argument", api.InvalidArgumentError),
        ("malformed", api.InvalidArgumentError),
        ("out_of_range", api.InvalidArgumentError),
        ("unauthenticated", api.UnauthenticatedError),
        ("permission_denied", api.PermissionDeniedError),
        ("failed_precondition", api.FailedPreconditionError),
        ("resource_exhausted", api.ResourceExhaustedError),
        ("deadline_exceeded", api.DeadlineExceededError),
        ("unavailable", api.UnavailableError),
        ("unimplemented", api.UnimplementedError),
        ("bad_route", api.UnimplementedError),
        ("internal", api.TwirpError),
        ("unknown", api.TwirpError),
        ("dataloss", api.TwirpError),
        ("canceled", api.TwirpError),
        ("aborted", api.TwirpError),
        ("a_code_from_the_future", api.TwirpError),
    ],
)
def test_twirp_json_errors_map_by_code(code: str, cls: type[api.TwirpError]) -> None:
    body = json.dumps({"code": code, "msg": "it failed", "meta": {"k": "v"}}).encode()
    error = error_from_response(418, body)
    assert type(error) is cls
    assert isinstance(error, api.ApiError) and isinstance(error, lk.LiveKitError)
    expected = code if code != "a_code_from_the_future" else "unknown"
    assert error.code is api.TwirpErrorCode(expected)
    assert (error.status, error.message, error.meta) == (418, "it failed", {"k": "v"})
    assert str(error) == f"it failed ({expected}, HTTP 418)"
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls and (copy.code, copy.status, copy.meta) == (
        error.code,
        418,
        {"k": "v"},
    )


@pytest.mark.parametrize(
    ("status", "cls", "code"),
    [
        (401, api.UnauthenticatedError, "unauthenticated"),
        (403, api.PermissionDeniedError, "permission_denied"),
        (404, api.UnimplementedError, "bad_route"),
        (429, api.UnavailableError, "unavailable"),
        (502, api.UnavailableError, "unavailable"),
        (503, api.UnavailableError, "unavailable"),
        (504, api.UnavailableError, "unavailable"),
        (302, api.TwirpError, "internal"),
        (500, api.TwirpError, "unknown"),
        (400, api.TwirpError, "unknown"),
    ],
)
def test_other_errors_map_by_http_status(status: int, cls: type[api.TwirpError], code: str) -> None:
    error = error_from_response(status, b"<html>bad gateway</html>")
    assert type(error) is cls and error.code is api.TwirpErrorCode(code)
    assert error.message == "<html>bad gateway</html>"
    assert error.meta == {
        "http_error_from_intermediary": "true",
        "status_code": str(status),
        "body": "<html>bad gateway</html>",
    }
    for body in (b"", b'{"msg": "no code"}', b"[1]", b"\xff\xfe"):
        assert type(error_from_response(status, body, "Reason")) is cls
    assert error_from_response(status, b"", "Reason").message == f"HTTP {status} Reason"


def test_error_texts_never_carry_a_token() -> None:
    token = api.AccessToken(KEY, SECRET).to_jwt()
    # livekit-server's answer to a token it cannot verify
    text = f"invalid token: {token}, error: token signature is invalid"
    plain = error_from_response(401, text.encode() + b" " * 5000)
    twirp = error_from_response(
        401, json.dumps({"code": "unauthenticated", "msg": text, "meta": {"t": token}}).encode()
    )
    for error in (plain, twirp):
        everything = str(error) + repr(error) + error.message + repr(error.meta)
        assert "<token redacted>" in everything
        for part in token.split("."):
            assert part not in everything
    assert len(plain.message) < 1100  # shortened
    assert isinstance(twirp_error(api.TwirpErrorCode.NOT_FOUND, "x", 404), api.NotFoundError)
    assert api.ServerError is api.TwirpError and api.ServerErrorCode is api.TwirpErrorCode


def test_http_url() -> None:
    assert http_url("ws://h:7880") == "http://h:7880"
    assert http_url("wss://x.livekit.cloud/") == "https://x.livekit.cloud"
    assert http_url("https://h/prefix/?q=1#f") == "https://h/prefix"
    assert http_url("HTTP://[::1]:80") == "http://[::1]:80"
    for bad in ("ftp://h", "h:7880", "ws://", ""):
        with pytest.raises(ValueError):
            http_url(bad)


# --------------------------------------------------------------------------- transport (mocked)

Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


def protobuf(content: bytes = b"", status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=content, headers={"content-type": "application/protobuf"})


def mocked(handler: Handler, **kwargs: Any) -> tuple[httpx.AsyncClient, api.LiveKitAPI]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return client, api.LiveKitAPI("wss://lk.test/base", KEY, SECRET, http_client=client, **kwargs)


R = "r1"
admin = api.VideoGrants(room_admin=True, room=R)
CALLS: list[tuple[str, Callable[[api.LiveKitAPI], Awaitable[object]], api.VideoGrants]] = [
    (
        "RoomService/CreateRoom",
        lambda a: a.room.create_room(api.CreateRoomRequest(name=R)),
        api.VideoGrants(room_create=True),
    ),
    (
        "RoomService/ListRooms",
        lambda a: a.room.list_rooms(api.ListRoomsRequest()),
        api.VideoGrants(room_list=True),
    ),
    (
        "RoomService/DeleteRoom",
        lambda a: a.room.delete_room(api.DeleteRoomRequest(room=R)),
        api.VideoGrants(room_create=True),
    ),
    (
        "RoomService/UpdateRoomMetadata",
        lambda a: a.room.update_room_metadata(api.UpdateRoomMetadataRequest(room=R)),
        admin,
    ),
    (
        "RoomService/ListParticipants",
        lambda a: a.room.list_participants(api.ListParticipantsRequest(room=R)),
        admin,
    ),
    (
        "RoomService/GetParticipant",
        lambda a: a.room.get_participant(api.RoomParticipantIdentity(room=R, identity="i")),
        admin,
    ),
    (
        "RoomService/RemoveParticipant",
        lambda a: a.room.remove_participant(api.RoomParticipantIdentity(room=R, identity="i")),
        admin,
    ),
    (
        "RoomService/MutePublishedTrack",
        lambda a: a.room.mute_published_track(api.MuteRoomTrackRequest(room=R)),
        admin,
    ),
    (
        "RoomService/UpdateParticipant",
        lambda a: a.room.update_participant(api.UpdateParticipantRequest(room=R)),
        admin,
    ),
    (
        "RoomService/UpdateSubscriptions",
        lambda a: a.room.update_subscriptions(api.UpdateSubscriptionsRequest(room=R)),
        admin,
    ),
    (
        "RoomService/SendData",
        lambda a: a.room.send_data(api.SendDataRequest(room=R, data=b"x")),
        admin,
    ),
    (
        "AgentDispatchService/CreateDispatch",
        lambda a: a.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(room=R)),
        admin,
    ),
    (
        "AgentDispatchService/DeleteDispatch",
        lambda a: a.agent_dispatch.delete_dispatch("AD_x", R),
        admin,
    ),
    ("AgentDispatchService/ListDispatch", lambda a: a.agent_dispatch.list_dispatch(R), admin),
    (
        "AgentDispatchService/ListDispatch",
        lambda a: a.agent_dispatch.get_dispatch("AD_x", R),
        admin,
    ),
]


async def test_each_call_is_a_twirp_post_signed_with_its_grant() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return protobuf()

    verifier = api.TokenVerifier(KEY, SECRET)
    client, lkapi = mocked(handler)
    async with client, lkapi:
        assert lkapi.url == "https://lk.test/base"
        for path, call, grants in CALLS:
            before = int(time.time())
            result = await call(lkapi)
            request = seen[-1]
            assert request.method == "POST"
            assert str(request.url) == f"https://lk.test/base/twirp/livekit.{path}"
            assert request.headers["content-type"] == "application/protobuf"
            assert request.headers["user-agent"].startswith("lkrtc-trio/")
            scheme, token = request.headers["authorization"].split(" ")
            assert scheme == "Bearer"
            assert verifier.verify(token) == api.Claims(video=grants), path
            claims = payload_of(token)
            assert before <= claims["nbf"] and claims["exp"] - claims["nbf"] == (
                CALL_TOKEN_TTL.total_seconds()
            )
            assert result is not None or path.endswith("ListDispatch")
        # empty answers: no dispatch
        assert await lkapi.agent_dispatch.get_dispatch("AD_x", R) is None
        assert await lkapi.agent_dispatch.list_dispatch(R) == []
    assert len(seen) == len(CALLS) + 2


async def test_send_data_sends_a_nonce_and_leaves_the_request_alone() -> None:
    bodies: list[bytes] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return protobuf()

    client, lkapi = mocked(handler)
    async with client, lkapi:
        request = api.SendDataRequest(room=R, data=b"hi", topic="t")
        await lkapi.room.send_data(request)
        await lkapi.room.send_data(request)
        assert request.nonce == b""
        await lkapi.room.send_data(api.SendDataRequest(room=R, nonce=b"mine"))
    first, second, third = (api.SendDataRequest.FromString(body) for body in bodies)
    assert (first.data, first.topic, len(first.nonce)) == (b"hi", "t", 16)
    assert second.nonce != first.nonce and third.nonce == b"mine"


async def test_answers_are_decoded_or_mapped_to_errors() -> None:
    answers: list[httpx.Response | Exception] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client, lkapi = mocked(handler)
    list_rooms = lkapi.room.list_rooms
    async with client, lkapi:
        answers.append(
            protobuf(api.ListRoomsResponse(rooms=[api.Room(name="a")]).SerializeToString())
        )
        assert [r.name for r in (await list_rooms(api.ListRoomsRequest())).rooms] == ["a"]
        answers.append(httpx.Response(404, json={"code": "not_found", "msg": "no room"}))
        with pytest.raises(api.NotFoundError, match="no room"):
            await list_rooms(api.ListRoomsRequest())
        answers.append(httpx.Response(200, text="<html>a captive portal</html>"))
        with pytest.raises(api.ApiError, match="not 'application/protobuf'") as info:
            await list_rooms(api.ListRoomsRequest())
        assert type(info.value) is api.ApiError
        answers.append(protobuf(b"\xff\xff\xff"))
        with pytest.raises(api.ApiError, match="not a ListRoomsResponse"):
            await list_rooms(api.ListRoomsRequest())
        refused = httpx.ConnectError("connection refused")
        answers.append(refused)
        with pytest.raises(api.ApiConnectionError) as conn:
            await list_rooms(api.ListRoomsRequest())
        assert type(conn.value) is api.ApiConnectionError and conn.value.__cause__ is refused
        slow = httpx.ReadTimeout("read timed out")
        answers.append(slow)
        with pytest.raises(api.ApiTimeoutError) as timeout:
            await list_rooms(api.ListRoomsRequest())
        assert timeout.value.__cause__ is slow
        assert isinstance(timeout.value, api.ApiConnectionError)


async def test_timeout_bounds_the_whole_call() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(30)
        raise AssertionError("not cancelled")

    client, lkapi = mocked(handler, timeout=0.2)
    async with client, lkapi:
        start = anyio.current_time()
        with anyio.fail_after(5), pytest.raises(api.ApiTimeoutError, match=r"within 0\.2 s"):
            await lkapi.room.list_rooms(api.ListRoomsRequest())
        assert anyio.current_time() - start < 2


async def test_cancelled_call_leaves_nothing_pending() -> None:
    calls = 0
    release = anyio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            await release.wait()  # never set: only a cancel ends it
        return protobuf()

    client, lkapi = mocked(handler)
    async with client, lkapi:
        with anyio.fail_after(5):
            with anyio.move_on_after(0.1) as scope:
                await lkapi.room.list_rooms(api.ListRoomsRequest())
            assert scope.cancelled_caught and calls == 1
            await lkapi.room.list_rooms(api.ListRoomsRequest())  # still usable
            assert calls == 2


async def test_closed_api_refuses_calls() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return protobuf()

    client, lkapi = mocked(handler)
    async with client:
        async with lkapi:
            assert not lkapi.closed
        assert lkapi.closed and "closed" in repr(lkapi)
        await lkapi.aclose()  # idempotent
        with pytest.raises(lk.ResourceClosedError):
            await lkapi.room.list_rooms(api.ListRoomsRequest())
        with pytest.raises(lk.ResourceClosedError):
            async with lkapi:
                pass
        assert not client.is_closed  # passed in: not ours to close
    owned = api.LiveKitAPI("http://lk.test", KEY, SECRET)
    await owned.aclose()
    assert owned._transport._client.is_closed


def test_constructor_errors_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="LIVEKIT_URL"):
        api.LiveKitAPI(api_key=KEY, api_secret=SECRET)
    with pytest.raises(ValueError, match="LIVEKIT_API_KEY"):
        api.LiveKitAPI("http://h")
    with pytest.raises(ValueError, match="wss://"):
        api.LiveKitAPI("h:7880", KEY, SECRET)
    with pytest.raises(ValueError, match="timeout"):
        api.LiveKitAPI("http://h", KEY, SECRET, timeout=0)
    monkeypatch.setenv("LIVEKIT_URL", "wss://env.test")
    monkeypatch.setenv("LIVEKIT_API_KEY", KEY)
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
    lkapi = api.LiveKitAPI()
    assert lkapi.url == "https://env.test"
    with pytest.warns(ResourceWarning, match="never closed"):
        del lkapi
        gc.collect()


async def test_unreachable_server_raises_api_connection_error_quickly() -> None:
    host = test_host()
    url = f"http://{host}:{free_port(host)}"  # nobody listens there
    async with api.LiveKitAPI(url, KEY, SECRET, timeout=5) as lkapi:
        start = anyio.current_time()
        with anyio.fail_after(5), pytest.raises(api.ApiConnectionError) as info:
            await lkapi.room.list_rooms(api.ListRoomsRequest())
    assert anyio.current_time() - start < 2
    assert type(info.value) is api.ApiConnectionError
    assert isinstance(info.value.__cause__, httpx.ConnectError)


# --------------------------------------------------------------------------- real server


@pytest.fixture
def lkapi_args(livekit_server: ServerInfo) -> tuple[str, str, str]:
    return livekit_server.url, livekit_server.api_key, livekit_server.api_secret


@pytest.mark.integration
async def test_room_lifecycle(lkapi_args: tuple[str, str, str], livekit_room_name: str) -> None:
    name = livekit_room_name
    with anyio.fail_after(20):
        async with api.LiveKitAPI(*lkapi_args) as lkapi:
            created = await lkapi.room.create_room(
                api.CreateRoomRequest(
                    name=name, empty_timeout=120, max_participants=5, metadata="hello"
                )
            )
            assert created.name == name and created.sid.startswith("RM_")
            [listed] = (await lkapi.room.list_rooms(api.ListRoomsRequest(names=[name]))).rooms
            assert (listed.sid, listed.empty_timeout, listed.max_participants, listed.metadata) == (
                created.sid,
                120,
                5,
                "hello",
            )
            everything = await lkapi.room.list_rooms(api.ListRoomsRequest())
            assert name in {room.name for room in everything.rooms}
            updated = await lkapi.room.update_room_metadata(
                api.UpdateRoomMetadataRequest(room=name, metadata="changed")
            )
            assert updated.metadata == "changed"
            nobody = await lkapi.room.list_participants(api.ListParticipantsRequest(room=name))
            assert list(nobody.participants) == []
            who = api.RoomParticipantIdentity(room=name, identity="nobody")
            with pytest.raises(api.NotFoundError) as info:
                await lkapi.room.get_participant(who)
            assert (info.value.code, info.value.status) == (api.TwirpErrorCode.NOT_FOUND, 404)
            with pytest.raises(api.NotFoundError):
                await lkapi.room.remove_participant(who)
            with pytest.raises(api.NotFoundError):
                await lkapi.room.update_participant(
                    api.UpdateParticipantRequest(room=name, identity="nobody", metadata="m")
                )
            # a call cancelled before its answer leaves the client usable
            with anyio.move_on_after(0):
                await lkapi.room.list_rooms(api.ListRoomsRequest())
            await lkapi.room.delete_room(api.DeleteRoomRequest(room=name))
            gone = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[name]))
            assert list(gone.rooms) == []
            with pytest.raises(api.NotFoundError):
                await lkapi.room.delete_room(api.DeleteRoomRequest(room=name))
            with pytest.raises(api.NotFoundError):
                await lkapi.room.update_room_metadata(
                    api.UpdateRoomMetadataRequest(room=name, metadata="x")
                )


@pytest.mark.integration
async def test_agent_dispatch(lkapi_args: tuple[str, str, str], livekit_room_name: str) -> None:
    name = livekit_room_name
    with anyio.fail_after(20):
        async with api.LiveKitAPI(*lkapi_args) as lkapi:
            await lkapi.room.create_room(api.CreateRoomRequest(name=name))
            dispatches = lkapi.agent_dispatch
            created = await dispatches.create_dispatch(
                api.CreateAgentDispatchRequest(room=name, agent_name="helper", metadata="job")
            )
            assert created.id.startswith("AD_")
            assert (created.room, created.agent_name, created.metadata) == (name, "helper", "job")
            listed = await dispatches.list_dispatch(name)
            assert created.id in {d.id for d in listed}
            got = await dispatches.get_dispatch(created.id, name)
            assert got is not None and (got.id, got.agent_name, got.metadata) == (
                created.id,
                "helper",
                "job",
            )
            deleted = await dispatches.delete_dispatch(created.id, name)
            assert deleted.id == created.id
            assert await dispatches.get_dispatch(created.id, name) is None
            assert created.id not in {d.id for d in await dispatches.list_dispatch(name)}
            with pytest.raises(api.NotFoundError):
                await dispatches.delete_dispatch(created.id, name)
            await lkapi.room.delete_room(api.DeleteRoomRequest(room=name))


@pytest.mark.integration
async def test_credentials_and_grants_are_checked(
    livekit_server: ServerInfo, livekit_room_name: str
) -> None:
    url, key, secret = livekit_server.url, livekit_server.api_key, livekit_server.api_secret
    with anyio.fail_after(10):
        for bad_key, bad_secret in ((key, "not-the-secret"), ("not-a-key", secret)):
            async with api.LiveKitAPI(url, bad_key, bad_secret) as lkapi:
                with pytest.raises(api.UnauthenticatedError) as info:
                    await lkapi.room.list_rooms(api.ListRoomsRequest())
            # livekit-server's plain-text 401, which echoes the token: redacted
            assert info.value.status == 401
            assert info.value.meta["http_error_from_intermediary"] == "true"
            assert "eyJ" not in str(info.value) + repr(info.value.meta)
        # A valid token without the grant a call needs: livekit-server says
        # `unauthenticated` ("permissions denied"), not `permission_denied`.
        async with api.LiveKitAPI(url, key, secret) as lkapi:
            request = api.ListParticipantsRequest(room=livekit_room_name)
            for grants in (
                api.VideoGrants(room_join=True, room=livekit_room_name),
                api.VideoGrants(room_admin=True, room="another-room"),
                api.VideoGrants(room_list=True, room_create=True),
            ):
                token = api.AccessToken(key, secret).with_identity("x").with_grants(grants).to_jwt()
                with pytest.raises(api.UnauthenticatedError) as denied:
                    await lkapi._transport.call(
                        "RoomService",
                        "ListParticipants",
                        request,
                        api.ListParticipantsResponse,
                        token=token,
                    )
                assert denied.value.message == "permissions denied"
                assert "http_error_from_intermediary" not in denied.value.meta


async def _wait_for(
    events: lk.EventSubscription, wanted: dict[type[Any], Callable[[Any], bool]]
) -> None:
    """Waits until an event of each wanted type matches its check (any order)."""
    with anyio.fail_after(10):
        async for event in events:
            check = wanted.get(type(event))
            if check is not None and check(event):
                del wanted[type(event)]
                if not wanted:
                    return
    raise AssertionError(f"the room ended before {list(wanted)}")


@pytest.mark.integration
async def test_token_joins_and_participant_is_managed(
    lkapi_args: tuple[str, str, str], livekit_room_name: str
) -> None:
    url, key, secret = lkapi_args
    name = livekit_room_name
    builder = (
        api.AccessToken(key, secret)
        .with_identity("alice")
        .with_name("Alice")
        .with_metadata("meta0")
        .with_attributes({"a": "1"})
        .with_kind("standard")
        .with_grants(api.VideoGrants(room_join=True, room=name, can_update_own_metadata=True))
        .with_room_config(
            api.RoomConfiguration(max_participants=7, empty_timeout=33, metadata="from-token")
        )
    )
    token = builder.to_jwt()
    assert api.TokenVerifier(key, secret).verify(token) == builder.claims
    with anyio.fail_after(30):
        async with api.LiveKitAPI(*lkapi_args) as lkapi, lk.open_room(url, token) as room:
            lp = room.local_participant
            assert (lp.identity, lp.name, lp.metadata, lp.attributes) == (
                "alice",
                "Alice",
                "meta0",
                {"a": "1"},
            )
            # the token's room configuration made the room
            assert room.metadata == "from-token"
            [info] = (await lkapi.room.list_rooms(api.ListRoomsRequest(names=[name]))).rooms
            assert (info.max_participants, info.empty_timeout) == (7, 33)

            listed = await lkapi.room.list_participants(api.ListParticipantsRequest(room=name))
            assert [p.identity for p in listed.participants] == ["alice"]
            me = api.RoomParticipantIdentity(room=name, identity="alice")
            got = await lkapi.room.get_participant(me)
            assert (got.sid, got.name, got.metadata) == (lp.sid, "Alice", "meta0")

            with room.events() as events:
                updated = await lkapi.room.update_participant(
                    api.UpdateParticipantRequest(
                        room=name,
                        identity="alice",
                        metadata="m2",
                        name="A2",
                        attributes={"b": "2"},
                        permission=api.ParticipantPermission(
                            can_subscribe=True,
                            can_publish=False,
                            can_publish_data=True,
                            can_update_metadata=True,
                        ),
                    )
                )
                assert (updated.metadata, updated.name) == ("m2", "A2")
                await _wait_for(
                    events,
                    {
                        lk.ParticipantMetadataChanged: lambda e: e.metadata == "m2",
                        lk.ParticipantNameChanged: lambda e: e.name == "A2",
                        lk.ParticipantAttributesChanged: lambda e: (
                            e.changed_attributes == {"b": "2"}
                        ),
                        lk.ParticipantPermissionChanged: lambda e: not e.permission.can_publish,
                    },
                )
                assert (lp.metadata, lp.name) == ("m2", "A2")
                assert lp.attributes == {"a": "1", "b": "2"}  # merged
                assert not lp.permissions.can_publish and lp.permissions.can_publish_data

                await lkapi.room.update_room_metadata(
                    api.UpdateRoomMetadataRequest(room=name, metadata="room-meta")
                )
                await next_event(
                    events, lk.RoomMetadataChanged, lambda e: e.metadata == "room-meta"
                )
                assert room.metadata == "room-meta"

                await lkapi.room.send_data(
                    api.SendDataRequest(
                        room=name,
                        data=b"from the server",
                        topic="api",
                        kind=api.DataPacket.RELIABLE,
                        destination_identities=["alice"],
                    )
                )
                data = await next_event(events, lk.DataReceived, lambda e: e.topic == "api")
                assert data.payload == b"from the server"

                await lkapi.room.remove_participant(me)
                gone = await next_event(events, lk.Disconnected)
                assert gone.reason is lk.DisconnectReason.PARTICIPANT_REMOVED
                assert not room.isconnected()
    await wait_released()


@pytest.mark.integration
async def test_tracks_are_muted_and_subscribed(
    livekit_server: ServerInfo, livekit_room_name: str
) -> None:
    url, name = livekit_server.url, livekit_room_name
    key, secret = livekit_server.api_key, livekit_server.api_secret
    manual = lk.RoomOptions(auto_subscribe=False)
    with anyio.fail_after(30):
        async with (
            api.LiveKitAPI(url, key, secret) as lkapi,
            lk.open_room(url, mint_token("alice", name, api_key=key, api_secret=secret)) as alice,
            lk.open_room(
                url, mint_token("bob", name, api_key=key, api_secret=secret), options=manual
            ) as bob,
        ):
            source = lk.AudioSource(48000, 1)
            track = lk.LocalAudioTrack.create_audio_track("mic", source)
            with alice.events() as a_events, bob.events() as b_events:
                pub = await alice.local_participant.publish_track(track)
                await next_event(
                    b_events, lk.TrackPublished, lambda e: e.publication.sid == pub.sid
                )

                muted = await lkapi.room.mute_published_track(
                    api.MuteRoomTrackRequest(
                        room=name, identity="alice", track_sid=pub.sid, muted=True
                    )
                )
                assert muted.track.sid == pub.sid and muted.track.muted
                await next_event(a_events, lk.TrackMuted, lambda e: e.publication.sid == pub.sid)
                assert pub.muted

                await lkapi.room.update_subscriptions(
                    api.UpdateSubscriptionsRequest(
                        room=name, identity="bob", track_sids=[pub.sid], subscribe=True
                    )
                )
                subscribed = await next_event(
                    b_events, lk.TrackSubscribed, lambda e: e.publication.sid == pub.sid
                )
                assert subscribed.participant.identity == "alice"

                await lkapi.room.delete_room(api.DeleteRoomRequest(room=name))
                for events in (a_events, b_events):
                    closed = await next_event(events, lk.Disconnected)
                    assert closed.reason is lk.DisconnectReason.ROOM_DELETED
            rooms = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[name]))
            assert list(rooms.rooms) == []
            track.close()
            source.close()
    await wait_released()
