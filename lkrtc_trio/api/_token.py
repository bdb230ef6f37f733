"""Access tokens: mint (:class:`AccessToken`) and verify (:class:`TokenVerifier`).

A LiveKit access token is an HS256 JWT signed with the API secret: ``iss`` is
the API key, ``sub`` the participant identity, ``nbf``/``exp`` its validity,
and the grants are camelCase JSON claims (``video``, ``sip``, ``agent``,
``inference``, ``observability``, ``roomConfig``, ...), the names
livekit-server reads. Signing and checking are PyJWT's; nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import os
import time
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Literal, TypeVar, final

import jwt
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from livekit.protocol.room import RoomConfiguration

from ._errors import TokenError, TokenErrorReason

__all__ = [
    "DEFAULT_LEEWAY",
    "DEFAULT_TTL",
    "AccessToken",
    "AgentGrants",
    "Claims",
    "InferenceGrants",
    "ObservabilityGrants",
    "ParticipantKind",
    "SIPGrants",
    "TokenVerifier",
    "VideoGrants",
]

DEFAULT_TTL: Final = timedelta(hours=6)
"""Lifetime of a token when :meth:`AccessToken.with_ttl` is not called."""

DEFAULT_LEEWAY: Final = timedelta(minutes=1)
"""Clock skew :class:`TokenVerifier` tolerates on ``exp`` and ``nbf``."""

ParticipantKind = Literal["standard", "ingress", "egress", "sip", "agent", "connector", "bridge"]
"""The ``kind`` claim: what the participant is (the server's ``ParticipantInfo.Kind``)."""

_ALGORITHM: Final = "HS256"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class VideoGrants:
    """The ``video`` claim: what the holder may do with rooms.

    ``None`` means "not set" (the claim is left out of the token; the server
    applies its default). ``can_publish_sources`` names the track sources the
    holder may publish (``"camera"``, ``"microphone"``, ``"screen_share"``,
    ``"screen_share_audio"``); when set it supersedes ``can_publish``. It
    accepts any sequence and is stored as a tuple.
    """

    room_create: bool | None = None
    """Create and delete rooms (RoomService ``CreateRoom``/``DeleteRoom``)."""
    room_list: bool | None = None
    """List rooms."""
    room_record: bool | None = None
    """Use the Egress service."""
    room_admin: bool | None = None
    """Administer ``room``: its participants, tracks, data, metadata, dispatches."""
    room_join: bool | None = None
    """Join ``room`` as a participant (``identity`` and ``room`` must be set)."""
    room: str = ""
    """The room the join and admin grants apply to."""
    destination_room: str | None = None
    """The room a participant may be forwarded or moved to."""
    can_publish: bool = True
    can_subscribe: bool = True
    can_publish_data: bool = True
    can_publish_sources: Sequence[str] | None = None
    can_update_own_metadata: bool | None = None
    """Set its own metadata, name and attributes from the client."""
    ingress_admin: bool | None = None
    hidden: bool | None = None
    """Invisible to the other participants."""
    recorder: bool | None = None
    agent: bool | None = None
    """Register as an agent worker."""
    can_manage_agent_session: bool | None = None
    can_subscribe_metrics: bool | None = None

    def __post_init__(self) -> None:
        sources = self.can_publish_sources
        if sources is not None:
            if isinstance(sources, str):
                raise TypeError("can_publish_sources must be a sequence of names, not a str")
            object.__setattr__(self, "can_publish_sources", tuple(sources))


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class SIPGrants:
    """The ``sip`` claim."""

    admin: bool = False
    """Manage SIP trunks and dispatch rules."""
    call: bool = False
    """Make outbound SIP calls."""


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class AgentGrants:
    """The ``agent`` claim (LiveKit Cloud agents)."""

    admin: bool = False
    """Create, update and delete Cloud agents."""
    simulation_admin: bool = False
    database_admin: bool = False
    dispatch_admin: bool = False


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class InferenceGrants:
    """The ``inference`` claim (LiveKit Cloud inference)."""

    perform: bool = False


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ObservabilityGrants:
    """The ``observability`` claim."""

    write: bool = False
    """Publish observability data."""


_Grants = VideoGrants | SIPGrants | AgentGrants | InferenceGrants | ObservabilityGrants
_G = TypeVar("_G", VideoGrants, SIPGrants, AgentGrants, InferenceGrants, ObservabilityGrants)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Claims:
    """What a token says: the identity (``sub``) and every LiveKit claim.

    Grants and optional claims the token does not carry are ``None``.
    """

    identity: str = ""
    name: str = ""
    kind: str = ""
    """A :data:`ParticipantKind` value, or ``""`` (the server's default, standard)."""
    metadata: str = ""
    video: VideoGrants | None = None
    sip: SIPGrants | None = None
    agent: AgentGrants | None = None
    inference: InferenceGrants | None = None
    observability: ObservabilityGrants | None = None
    attributes: Mapping[str, str] | None = None
    sha256: str | None = None
    """Hex SHA-256 of a request body the token vouches for (webhooks)."""
    room_preset: str | None = None
    """Name of a room preset (LiveKit Cloud)."""
    room_config: RoomConfiguration | None = None
    """Configuration of the room, applied when this participant's join creates it."""


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _grants_json(grants: _Grants) -> dict[str, object]:
    """``grants`` as its JSON claim: camelCase names, unset (None/"") fields left out."""
    out: dict[str, object] = {}
    for field in dataclasses.fields(grants):
        value = getattr(grants, field.name)
        if value is None or value == "":
            continue
        out[_camel(field.name)] = list(value) if isinstance(value, tuple) else value
    return out


def _seconds(value: timedelta | float, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not seconds >= 0:
        raise ValueError(f"{what} must not be negative, got {value!r}")
    return seconds


def credential_or_env(value: str | None, env: str, what: str) -> str:
    """``value``, else the environment variable ``env``.

    Raises:
        ValueError: Both are unset or empty.
    """
    value = value or os.environ.get(env)
    if not value:
        raise ValueError(f"{what} must be set: pass it, or set the {env} environment variable")
    return value


@final
class AccessToken:
    """A builder of access tokens: set the claims, then call :meth:`to_jwt`.

    The ``with_*`` methods change this builder and return it, for chaining::

        token = (
            AccessToken(api_key, api_secret)
            .with_identity("alice")
            .with_name("Alice")
            .with_grants(VideoGrants(room_join=True, room="my-room"))
            .to_jwt()
        )

    Args:
        api_key: The API key (the token's issuer); defaults to the
            ``LIVEKIT_API_KEY`` environment variable.
        api_secret: The API secret that signs the token; defaults to
            ``LIVEKIT_API_SECRET``.

    Raises:
        ValueError: ``api_key`` or ``api_secret`` is empty and its
            environment variable is unset or empty.
    """

    def __init__(self, api_key: str | None = None, api_secret: str | None = None) -> None:
        self._api_key = credential_or_env(api_key, "LIVEKIT_API_KEY", "api_key")
        self._api_secret = credential_or_env(api_secret, "LIVEKIT_API_SECRET", "api_secret")
        self._claims = Claims()
        self._ttl = DEFAULT_TTL

    @property
    def api_key(self) -> str:
        """The API key, the token's issuer (``iss``)."""
        return self._api_key

    @property
    def identity(self) -> str:
        """The participant identity (``sub``)."""
        return self._claims.identity

    @property
    def ttl(self) -> timedelta:
        """How long the token is valid from the moment :meth:`to_jwt` is called."""
        return self._ttl

    @property
    def claims(self) -> Claims:
        """The claims set so far (what :meth:`TokenVerifier.verify` returns for the token)."""
        return self._claims

    def _set(self, **changes: Any) -> AccessToken:
        self._claims = dataclasses.replace(self._claims, **changes)
        return self

    def with_identity(self, identity: str) -> AccessToken:
        """Set the participant identity (``sub``), required to join a room."""
        return self._set(identity=identity)

    def with_name(self, name: str) -> AccessToken:
        """Set the participant's display name."""
        return self._set(name=name)

    def with_metadata(self, metadata: str) -> AccessToken:
        """Set the participant's metadata."""
        return self._set(metadata=metadata)

    def with_attributes(self, attributes: Mapping[str, str]) -> AccessToken:
        """Set the participant's attributes (copied)."""
        return self._set(attributes=dict(attributes))

    def with_kind(self, kind: ParticipantKind) -> AccessToken:
        """Set the participant kind (``"standard"``, ``"agent"``, ``"sip"``, ...)."""
        return self._set(kind=kind)

    def with_ttl(self, ttl: timedelta | float) -> AccessToken:
        """Set the lifetime (a ``timedelta`` or seconds); the default is 6 hours.

        Raises:
            ValueError: ``ttl`` is not positive.
        """
        if not _seconds(ttl, "ttl") > 0:
            raise ValueError(f"ttl must be positive, got {ttl!r}")
        self._ttl = ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl)
        return self

    def with_grants(self, grants: VideoGrants) -> AccessToken:
        """Set the ``video`` grants (rooms)."""
        return self._set(video=grants)

    def with_sip_grants(self, grants: SIPGrants) -> AccessToken:
        """Set the ``sip`` grants."""
        return self._set(sip=grants)

    def with_agent_grants(self, grants: AgentGrants) -> AccessToken:
        """Set the ``agent`` grants."""
        return self._set(agent=grants)

    def with_inference_grants(self, grants: InferenceGrants) -> AccessToken:
        """Set the ``inference`` grants."""
        return self._set(inference=grants)

    def with_observability_grants(self, grants: ObservabilityGrants) -> AccessToken:
        """Set the ``observability`` grants."""
        return self._set(observability=grants)

    def with_sha256(self, sha256: str) -> AccessToken:
        """Set the ``sha256`` claim (the hex digest of a body the token vouches for)."""
        return self._set(sha256=sha256)

    def with_room_preset(self, preset: str) -> AccessToken:
        """Set the room preset to use when this participant creates the room (LiveKit Cloud)."""
        return self._set(room_preset=preset)

    def with_room_config(self, config: RoomConfiguration) -> AccessToken:
        """Set the configuration of the room this participant's join creates
        (a copy is kept). It travels as the ``roomConfig`` claim, in protobuf's
        JSON mapping (camelCase), which is what livekit-server parses."""
        copy = RoomConfiguration()
        copy.CopyFrom(config)
        return self._set(room_config=copy)

    def to_jwt(self) -> str:
        """Sign the token, valid from now for :attr:`ttl`.

        Returns:
            The compact JWT.

        Raises:
            ValueError: The video grants allow ``room_join`` but the identity
                or the room is empty.
        """
        return self._to_jwt(backdate=0)

    def _to_jwt(self, *, backdate: int) -> str:
        """:meth:`to_jwt` with ``nbf`` set ``backdate`` seconds in the past."""
        claims = self._claims
        video = claims.video
        if video is not None and video.room_join:
            if not claims.identity:
                raise ValueError("identity must be set when the grants allow room_join")
            if not video.room:
                raise ValueError("room must be set when the grants allow room_join")
        payload: dict[str, object] = {}
        for key in ("name", "kind", "metadata", "sha256", "room_preset"):
            value = getattr(claims, key)
            if value:
                payload[_camel(key)] = value
        for key in ("video", "sip", "agent", "inference", "observability"):
            grants = getattr(claims, key)
            if grants is not None:
                payload[key] = _grants_json(grants)
        if claims.attributes is not None:
            payload["attributes"] = dict(claims.attributes)
        if claims.room_config is not None:
            payload["roomConfig"] = MessageToDict(claims.room_config)
        now = int(time.time())
        if claims.identity:
            payload["sub"] = claims.identity
        payload["iss"] = self._api_key
        payload["nbf"] = now - backdate
        payload["exp"] = now + int(self._ttl.total_seconds())
        return jwt.encode(payload, self._api_secret, algorithm=_ALGORITHM)

    def __repr__(self) -> str:
        return f"<AccessToken api_key={self._api_key!r} identity={self._claims.identity!r}>"


# --------------------------------------------------------------------------- verify


def _malformed(message: str) -> TokenError:
    return TokenError(message, TokenErrorReason.MALFORMED)


def _typed(where: str, value: object, hint: object) -> object:
    """``value`` checked against a grant field's type (tuples for sequences)."""
    if value is None and hint in (bool | None, str | None, Sequence[str] | None):
        return None
    if hint in (bool, bool | None) and isinstance(value, bool):
        return value
    if hint in (str, str | None) and isinstance(value, str):
        return value
    if (
        hint == Sequence[str] | None
        and isinstance(value, list)
        and all(isinstance(item, str) for item in value)
    ):
        return tuple(value)
    raise _malformed(f"claim {where} has the wrong type ({type(value).__name__})")


_JSON_FIELDS: dict[type[_Grants], dict[str, tuple[str, object]]] = {}


def _json_fields(cls: type[_Grants]) -> dict[str, tuple[str, object]]:
    """camelCase claim name -> (field name, field type) of a grants class."""
    fields = _JSON_FIELDS.get(cls)
    if fields is None:
        hints = typing.get_type_hints(cls)
        fields = {_camel(f.name): (f.name, hints[f.name]) for f in dataclasses.fields(cls)}
        _JSON_FIELDS[cls] = fields
    return fields


def _grants_from_json(cls: type[_G], name: str, value: object) -> _G:
    if not isinstance(value, dict):
        raise _malformed(f"claim {name!r} is not an object")
    fields = _json_fields(cls)
    kwargs: dict[str, Any] = {}
    for key, item in value.items():
        if key in fields:  # unknown keys (grants of a newer server) are ignored
            field, hint = fields[key]
            kwargs[field] = _typed(f"{name}.{key}", item, hint)
    return cls(**kwargs)


def _str_claim(payload: Mapping[str, object], key: str) -> str | None:
    value = payload.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _malformed(f"claim {key!r} is not a string")


def _grants_claim(payload: Mapping[str, object], key: str, cls: type[_G]) -> _G | None:
    value = payload.get(key)
    return None if value is None else _grants_from_json(cls, key, value)


def _claims_from_json(payload: Mapping[str, object]) -> Claims:
    attributes = payload.get("attributes")
    if attributes is not None and not (
        isinstance(attributes, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in attributes.items())
    ):
        raise _malformed("claim 'attributes' is not an object of strings")
    room_config = None
    raw_config = payload.get("roomConfig")
    if raw_config is not None:
        if not isinstance(raw_config, dict):
            raise _malformed("claim 'roomConfig' is not an object")
        try:
            room_config = ParseDict(raw_config, RoomConfiguration(), ignore_unknown_fields=True)
        except ParseError as exc:
            raise _malformed(f"claim 'roomConfig' is not a RoomConfiguration: {exc}") from exc
    return Claims(
        identity=_str_claim(payload, "sub") or "",
        name=_str_claim(payload, "name") or "",
        kind=_str_claim(payload, "kind") or "",
        metadata=_str_claim(payload, "metadata") or "",
        attributes=dict(attributes) if attributes is not None else None,
        sha256=_str_claim(payload, "sha256"),
        room_preset=_str_claim(payload, "roomPreset"),
        room_config=room_config,
        video=_grants_claim(payload, "video", VideoGrants),
        sip=_grants_claim(payload, "sip", SIPGrants),
        agent=_grants_claim(payload, "agent", AgentGrants),
        inference=_grants_claim(payload, "inference", InferenceGrants),
        observability=_grants_claim(payload, "observability", ObservabilityGrants),
    )


@final
class TokenVerifier:
    """Checks access tokens signed with an API key and secret.

    Args:
        api_key: The expected issuer; defaults to ``LIVEKIT_API_KEY``.
        api_secret: The secret tokens must be signed with; defaults to
            ``LIVEKIT_API_SECRET``.
        leeway: Clock skew tolerated on ``exp`` and ``nbf`` (a ``timedelta``
            or seconds), default 1 minute.

    Raises:
        ValueError: ``api_key`` or ``api_secret`` is empty and its
            environment variable is unset or empty, or ``leeway`` is negative.
    """

    def __init__(
        self,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        leeway: timedelta | float = DEFAULT_LEEWAY,
    ) -> None:
        self._api_key = credential_or_env(api_key, "LIVEKIT_API_KEY", "api_key")
        self._api_secret = credential_or_env(api_secret, "LIVEKIT_API_SECRET", "api_secret")
        self._leeway = _seconds(leeway, "leeway")

    @property
    def api_key(self) -> str:
        """The expected issuer."""
        return self._api_key

    def verify(self, token: str) -> Claims:
        """Check ``token`` and return its claims.

        The token must be an HS256 JWT signed with the API secret, issued by
        the API key (``iss``), carry ``exp``, and be valid now (``nbf`` and
        ``exp``, within the leeway). Claims this version does not know are
        ignored; known claims of the wrong type are refused.

        Args:
            token: The compact JWT.

        Returns:
            The token's identity and claims.

        Raises:
            TokenError: The token was refused; ``reason`` says why (a
                :class:`TokenErrorReason`). The message never contains the token.
        """
        try:
            payload = jwt.decode(
                token,
                key=self._api_secret,
                algorithms=[_ALGORITHM],
                issuer=self._api_key,
                leeway=self._leeway,
                options={"require": ["exp", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("the token has expired", TokenErrorReason.EXPIRED) from exc
        except jwt.ImmatureSignatureError as exc:
            raise TokenError(
                "the token is not valid yet (nbf)", TokenErrorReason.NOT_YET_VALID
            ) from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError(
                "the token was issued for another API key", TokenErrorReason.WRONG_ISSUER
            ) from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(
                f"the token has no {exc.claim!r} claim", TokenErrorReason.MISSING_CLAIM
            ) from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenError(
                "the token is not signed with this API secret", TokenErrorReason.BAD_SIGNATURE
            ) from exc
        except jwt.InvalidTokenError as exc:
            raise _malformed(f"not a valid HS256 access token: {exc}") from exc
        return _claims_from_json(payload)

    def __repr__(self) -> str:
        return f"<TokenVerifier api_key={self._api_key!r} leeway={self._leeway:g}s>"
