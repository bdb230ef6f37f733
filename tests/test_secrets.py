"""Access tokens never reach logs or exception texts: connect with a good, an
expired and a wrongly signed token, record every log record at every level
(native TRACE included) and every exception text, and look for the tokens."""

from __future__ import annotations

import time

import pytest

import lkrtc_trio as lk
from lkrtc_trio._errors import redact
from lkrtc_trio.testing import ServerInfo, mint_token

from .helpers import wait_released

pytestmark = pytest.mark.integration

WRONG_SECRET = "not-the-secret-7f3a9c"


def test_redact_finds_tokens_anywhere() -> None:
    token = mint_token("a", "r")
    for text in (token, f"url ws://h/rtc?access_token={token}&auto_subscribe=1", f'"{token}"'):
        assert token not in redact(text) and "<token redacted>" in redact(text)
    assert redact("no token here") == "no token here"


async def test_no_token_in_logs_or_errors(
    livekit_server: ServerInfo, livekit_room_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(1)  # everything, native TRACE and DEBUG records included
    url, room = livekit_server.url, livekit_room_name
    good = mint_token(
        "good", room, api_key=livekit_server.api_key, api_secret=livekit_server.api_secret
    )
    wrong = mint_token("wrong", room, api_key=livekit_server.api_key, api_secret=WRONG_SECRET)
    real_time = time.time
    try:
        time.time = lambda: real_time() - 7200
        expired = mint_token(
            "expired",
            room,
            api_key=livekit_server.api_key,
            api_secret=livekit_server.api_secret,
            ttl=60,
        )
    finally:
        time.time = real_time
    texts: list[str] = []
    async with lk.open_room(url, good) as ok:
        assert ok.isconnected()
    for bad in (wrong, expired):
        with pytest.raises(lk.ConnectError) as info:
            async with lk.open_room(url, bad):
                pytest.fail("connected with a bad token")
        texts += [str(info.value), repr(info.value), info.value.reason]
    await wait_released()
    texts += [r.getMessage() for r in caplog.records]
    assert len(caplog.records) > 10  # the native core did log
    for token in (good, wrong, expired):
        for part in token.split("."):  # not even the payload or the signature alone
            assert not any(part in text for text in texts), "a token reached a log or an error"
    assert not any(WRONG_SECRET in text for text in texts)
