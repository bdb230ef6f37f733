"""End-to-end encryption: the options (``RoomOptions.encryption``), the key
provider and the frame cryptors of a connected room.

Names follow the official SDK (``E2EEOptions``, ``KeyProviderOptions``,
``KeyProvider``, ``E2EEManager``, ``FrameCryptor``); values are the native
core's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, final

from ._errors import NativeError, NoPublicConstructor
from ._proto import ffi_pb2
from ._types import _Open

if TYPE_CHECKING:
    from ._session import RoomSession

__all__ = [
    "DEFAULT_FAILURE_TOLERANCE",
    "DEFAULT_KEY_RING_SIZE",
    "DEFAULT_RATCHET_SALT",
    "DEFAULT_RATCHET_WINDOW_SIZE",
    "E2EEManager",
    "E2EEOptions",
    "EncryptionType",
    "FrameCryptor",
    "KeyDerivationFunction",
    "KeyProvider",
    "KeyProviderOptions",
]

DEFAULT_RATCHET_SALT = b"LKFrameEncryptionKey"
DEFAULT_RATCHET_WINDOW_SIZE = 16
DEFAULT_FAILURE_TOLERANCE = -1
DEFAULT_KEY_RING_SIZE = 16


class EncryptionType(_Open):
    NONE = 0
    GCM = 1
    CUSTOM = 2


class KeyDerivationFunction(_Open):
    PBKDF2 = 0
    HKDF = 1


@final
@dataclass(frozen=True, kw_only=True)
class KeyProviderOptions:
    """How frame keys are provided and derived.

    Attributes:
        shared_key: one key for every participant (shared-key mode); None for
            per-participant keys set later with ``KeyProvider.set_key``.
        ratchet_salt: salt of the key derivation (same on every participant).
        ratchet_window_size: how many ratchet steps a receiver tries forward
            when a frame does not decrypt with its current key.
        failure_tolerance: decryption failures tolerated before the cryptor
            reports ``DECRYPTION_FAILED`` (-1: unlimited).
        key_ring_size: how many key indexes each participant keeps (1..256).
        key_derivation_function: PBKDF2 (the default) or HKDF.
    """

    shared_key: bytes | None = None
    ratchet_salt: bytes = DEFAULT_RATCHET_SALT
    ratchet_window_size: int = DEFAULT_RATCHET_WINDOW_SIZE
    failure_tolerance: int = DEFAULT_FAILURE_TOLERANCE
    key_ring_size: int = DEFAULT_KEY_RING_SIZE
    key_derivation_function: KeyDerivationFunction = KeyDerivationFunction.PBKDF2

    def __post_init__(self) -> None:
        if self.shared_key is not None and not isinstance(self.shared_key, bytes):
            raise TypeError("shared_key must be bytes or None")
        if self.shared_key is not None and not self.shared_key:
            raise ValueError("shared_key must not be empty")
        if not isinstance(self.ratchet_salt, bytes) or not self.ratchet_salt:
            raise ValueError("ratchet_salt must be non-empty bytes")
        if not (0 <= self.ratchet_window_size <= 1_000):
            raise ValueError("ratchet_window_size must be in 0..1000")
        if self.failure_tolerance < -1:
            raise ValueError("failure_tolerance must be >= -1 (-1: unlimited)")
        if not (1 <= self.key_ring_size <= 256):
            raise ValueError("key_ring_size must be in 1..256")
        if self.key_derivation_function not in KeyDerivationFunction._value2member_map_:
            raise ValueError(f"unknown key_derivation_function {self.key_derivation_function!r}")

    def _fill(self, msg: Any) -> None:
        if self.shared_key is not None:
            msg.shared_key = self.shared_key
        msg.ratchet_salt = self.ratchet_salt
        msg.ratchet_window_size = self.ratchet_window_size
        msg.failure_tolerance = self.failure_tolerance
        msg.key_ring_size = self.key_ring_size
        msg.key_derivation_function = int(self.key_derivation_function)


@final
@dataclass(frozen=True, kw_only=True)
class E2EEOptions:
    """``RoomOptions.encryption``: end-to-end encryption of media (and data)."""

    key_provider_options: KeyProviderOptions = field(default_factory=KeyProviderOptions)
    encryption_type: EncryptionType = EncryptionType.GCM

    def __post_init__(self) -> None:
        if not isinstance(self.key_provider_options, KeyProviderOptions):
            raise TypeError("key_provider_options must be a KeyProviderOptions")
        if self.encryption_type not in EncryptionType._value2member_map_:
            raise ValueError(f"unknown encryption_type {self.encryption_type!r}")

    def _fill(self, msg: Any) -> None:
        msg.encryption_type = int(self.encryption_type)
        self.key_provider_options._fill(msg.key_provider_options)


# -- the live objects of a connected room ------------------------------------------------------
#
# Every call below is one synchronous request (``FfiRequest.e2ee``) answered in the
# ``FfiResponse``: nothing waits, nothing yields to the event loop.


def _key(key: object) -> bytes:
    if isinstance(key, str):
        raise TypeError("a key must be bytes, not str (encode it first)")
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"a key must be bytes, not {type(key).__name__}")
    out = bytes(key)
    if not out:
        raise ValueError("a key must not be empty")
    return out


def _index(key_index: object, ring: int) -> int:
    if isinstance(key_index, bool) or not isinstance(key_index, int):
        raise TypeError(f"key_index must be an int, not {type(key_index).__name__}")
    if not 0 <= key_index < ring:
        raise ValueError(f"key_index must be in 0..{ring - 1} (key_ring_size {ring})")
    return key_index


def _identity(identity: object) -> str:
    if not isinstance(identity, str):
        raise TypeError(f"participant_identity must be a str, not {type(identity).__name__}")
    if not identity:
        raise ValueError("participant_identity must not be empty")
    return identity


def _flag(enabled: object) -> bool:
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, not {type(enabled).__name__}")
    return enabled


def _request(session: RoomSession, fill: Any) -> Any:
    """Sends one e2ee request of the room (``fill(req.e2ee)`` sets its message) and
    returns the ``E2eeResponse``. Raises what ``check_open`` raises, or NativeError."""
    session.check_open()
    req = ffi_pb2.FfiRequest()
    req.e2ee.room_handle = session.handle.id
    fill(req.e2ee)
    resp = session.rt.request(req)
    if resp.WhichOneof("message") != "e2ee":
        raise NativeError(f"the native core answered an e2ee request with {resp!r}")
    return resp.e2ee


@final
class KeyProvider(metaclass=NoPublicConstructor):
    """The keys of an encrypted room: ``room.e2ee_manager.key_provider``.

    Shared-key mode (``KeyProviderOptions.shared_key`` set): every participant
    encrypts and decrypts with the same key ring (``set_shared_key``,
    ``ratchet_shared_key``). Per-participant mode: each participant's frames are
    encrypted with that participant's own key, which every receiver must set for
    that identity (``set_key``, ``ratchet_key``; your own identity for what you
    send).

    Every method is a synchronous call into the native core: it is not a
    checkpoint and cannot be cancelled. Setting and ratcheting a key derive key
    material (PBKDF2 or HKDF) before returning: they hold the event loop for
    about 10 ms (set) and 25 ms (ratchet) with the default PBKDF2; exporting
    takes microseconds. Every method raises:

    Raises:
        TypeError: an argument of the wrong type (a key that is not bytes, a
            ``key_index`` that is not an int...), before anything is sent.
        ValueError: an empty key or identity, or a ``key_index`` outside
            ``0..key_ring_size - 1``, before anything is sent.
        RoomClosedError: the room is closed (``RoomDisconnectedError`` when
            the server or the network ended it).
        NativeError: the native core refused the request, or has no key at
            that index (export and ratchet).
    """

    def __init__(self, session: RoomSession, options: KeyProviderOptions) -> None:
        self._session = session
        self._options = options

    @property
    def options(self) -> KeyProviderOptions:
        """The options the room was opened with."""
        return self._options

    def _index(self, key_index: object) -> int:
        return _index(key_index, self._options.key_ring_size)

    def _key(self, fill: Any, answer: str, field: str, missing: str) -> bytes:
        """Sends the request ``fill`` makes; the key in its ``answer``
        message's ``field`` (NativeError ``missing`` when the native core left
        it unset: no key there)."""
        got = getattr(_request(self._session, fill), answer)
        if not got.HasField(field):
            raise NativeError(missing)
        return bytes(getattr(got, field))

    def set_shared_key(self, key: bytes | bytearray | memoryview, key_index: int = 0) -> None:
        """Sets the shared key at ``key_index`` (shared-key mode). Frames sent
        afterwards are encrypted with it when it is the current index.

        Raises: see the class. Not a checkpoint.
        """
        key, key_index = _key(key), self._index(key_index)

        def fill(m: Any) -> None:
            m.set_shared_key.shared_key = key
            m.set_shared_key.key_index = key_index

        _request(self._session, fill)

    def export_shared_key(self, key_index: int = 0) -> bytes:
        """The shared key at ``key_index`` (after any ratchet).

        Raises: see the class; NativeError when no shared key is set there.
        Not a checkpoint.
        """
        key_index = self._index(key_index)

        def fill(m: Any) -> None:
            m.get_shared_key.key_index = key_index

        return self._key(fill, "get_shared_key", "key", f"no shared key at index {key_index}")

    def ratchet_shared_key(self, key_index: int = 0) -> bytes:
        """Derives the next shared key at ``key_index`` from the current one
        (with ``ratchet_salt``) and uses it from now on; returns it. Receivers
        that still hold the previous key follow by ratcheting on their own when
        a frame does not decrypt (up to ``ratchet_window_size`` steps), or by
        calling this too.

        Raises: see the class; NativeError when no shared key is set there.
        Not a checkpoint.
        """
        key_index = self._index(key_index)

        def fill(m: Any) -> None:
            m.ratchet_shared_key.key_index = key_index

        missing = f"no shared key to ratchet at index {key_index}"
        return self._key(fill, "ratchet_shared_key", "new_key", missing)

    def set_key(
        self, participant_identity: str, key: bytes | bytearray | memoryview, key_index: int = 0
    ) -> None:
        """Sets ``participant_identity``'s key at ``key_index`` (per-participant
        mode): the key its frames are decrypted with, or, for your own
        identity, the key your frames are encrypted with.

        Raises: see the class. Not a checkpoint.
        """
        identity = _identity(participant_identity)
        key, key_index = _key(key), self._index(key_index)

        def fill(m: Any) -> None:
            m.set_key.participant_identity = identity
            m.set_key.key = key
            m.set_key.key_index = key_index

        _request(self._session, fill)

    def export_key(self, participant_identity: str, key_index: int = 0) -> bytes:
        """``participant_identity``'s key at ``key_index`` (after any ratchet).

        Raises: see the class; NativeError when no key is set there.
        Not a checkpoint.
        """
        identity, key_index = _identity(participant_identity), self._index(key_index)

        def fill(m: Any) -> None:
            m.get_key.participant_identity = identity
            m.get_key.key_index = key_index

        return self._key(fill, "get_key", "key", f"no key for {identity!r} at index {key_index}")

    def ratchet_key(self, participant_identity: str, key_index: int = 0) -> bytes:
        """Derives ``participant_identity``'s next key at ``key_index`` from its
        current one and uses it from now on; returns it.

        Raises: see the class; NativeError when no key is set there.
        Not a checkpoint.
        """
        identity, key_index = _identity(participant_identity), self._index(key_index)

        def fill(m: Any) -> None:
            m.ratchet_key.participant_identity = identity
            m.ratchet_key.key_index = key_index

        missing = f"no key for {identity!r} to ratchet at index {key_index}"
        return self._key(fill, "ratchet_key", "new_key", missing)

    def __repr__(self) -> str:
        mode = "shared" if self._options.shared_key is not None else "per-participant"
        return f"<KeyProvider {mode} key_ring_size={self._options.key_ring_size}>"


@final
class FrameCryptor(metaclass=NoPublicConstructor):
    """One track's frame encryptor (a track you publish) or decryptor (a track
    you are subscribed to), as :meth:`E2EEManager.frame_cryptors` found it.

    A snapshot: ``enabled`` and ``key_index`` are those of the listing, updated
    by this object's own setters; list again to see other changes.
    """

    def __init__(
        self,
        session: RoomSession,
        ring: int,
        participant_identity: str,
        track_sid: str,
        key_index: int,
        enabled: bool,
    ) -> None:
        self._session = session
        self._ring = ring
        self._participant_identity = participant_identity
        self._track_sid = track_sid
        self._key_index = key_index
        self._enabled = enabled

    @property
    def participant_identity(self) -> str:
        """Whose frames these are (your own identity for a track you publish)."""
        return self._participant_identity

    @property
    def track_sid(self) -> str:
        return self._track_sid

    @property
    def key_index(self) -> int:
        """The key index this cryptor uses."""
        return self._key_index

    @property
    def enabled(self) -> bool:
        """Whether frames are encrypted (sender) or decrypted (receiver)."""
        return self._enabled

    def _check_exists(self) -> None:
        for c in _list_cryptors(self._session):
            if (c.participant_identity, c.track_sid) == (
                self._participant_identity,
                self._track_sid,
            ):
                return
        raise NativeError(
            f"no frame cryptor for track {self._track_sid} of {self._participant_identity!r} "
            "any more (unpublished or unsubscribed)"
        )

    def set_enabled(self, enabled: bool) -> None:
        """Turns this track's encryption (or decryption) on or off. A sender
        with encryption off sends plain frames, which keyed receivers cannot
        decrypt; a receiver with decryption off passes encrypted frames to its
        decoder as they are.

        Raises:
            TypeError: ``enabled`` is not a bool.
            RoomClosedError: the room is closed.
            NativeError: the cryptor no longer exists (its track was
                unpublished or unsubscribed) or the native core refused.

        Not a checkpoint (a synchronous call).
        """
        enabled = _flag(enabled)
        self._check_exists()
        identity, sid = self._participant_identity, self._track_sid

        def fill(m: Any) -> None:
            m.cryptor_set_enabled.participant_identity = identity
            m.cryptor_set_enabled.track_sid = sid
            m.cryptor_set_enabled.enabled = enabled

        _request(self._session, fill)
        self._enabled = enabled

    def set_key_index(self, key_index: int) -> None:
        """Makes this cryptor use the key at ``key_index`` of its key ring.

        Raises:
            TypeError: ``key_index`` is not an int.
            ValueError: ``key_index`` outside ``0..key_ring_size - 1``.
            RoomClosedError: the room is closed.
            NativeError: the cryptor no longer exists (its track was
                unpublished or unsubscribed) or the native core refused.

        Not a checkpoint (a synchronous call).
        """
        key_index = _index(key_index, self._ring)
        self._check_exists()
        identity, sid = self._participant_identity, self._track_sid

        def fill(m: Any) -> None:
            m.cryptor_set_key_index.participant_identity = identity
            m.cryptor_set_key_index.track_sid = sid
            m.cryptor_set_key_index.key_index = key_index

        _request(self._session, fill)
        self._key_index = key_index

    def __repr__(self) -> str:
        return (
            f"<FrameCryptor {self._participant_identity!r} {self._track_sid} "
            f"key_index={self._key_index} enabled={self._enabled}>"
        )


def _list_cryptors(session: RoomSession) -> Any:
    def fill(m: Any) -> None:
        m.manager_get_frame_cryptors.SetInParent()

    return _request(session, fill).manager_get_frame_cryptors.frame_cryptors


@final
class E2EEManager(metaclass=NoPublicConstructor):
    """End-to-end encryption of a room: ``room.e2ee_manager``.

    It exists in every room. In a room opened without
    ``RoomOptions.encryption`` it is disabled for good: ``enabled`` is False,
    ``key_provider`` is None and ``frame_cryptors()`` is empty.
    """

    def __init__(self, session: RoomSession, options: E2EEOptions | None) -> None:
        self._session = session
        self._options = options
        self._enabled = options is not None
        self._key_provider = (
            None if options is None else KeyProvider._create(session, options.key_provider_options)
        )

    @property
    def options(self) -> E2EEOptions | None:
        """``RoomOptions.encryption`` of the room."""
        return self._options

    @property
    def enabled(self) -> bool:
        """Whether frames are encrypted and decrypted (as last set)."""
        return self._enabled

    @property
    def key_provider(self) -> KeyProvider | None:
        """The room's keys; None in a room opened without encryption."""
        return self._key_provider

    def set_enabled(self, enabled: bool) -> None:
        """Turns encryption and decryption of every track on or off.

        Raises:
            TypeError: ``enabled`` is not a bool.
            ValueError: enabling a room opened without ``RoomOptions.encryption``
                (it has no keys; nothing is sent).
            RoomClosedError: the room is closed.
            NativeError: the native core refused.

        Not a checkpoint (a synchronous call).
        """
        enabled = _flag(enabled)
        if enabled and self._options is None:
            raise ValueError("the room was opened without RoomOptions.encryption")

        def fill(m: Any) -> None:
            m.manager_set_enabled.enabled = enabled

        _request(self._session, fill)
        self._enabled = enabled

    def frame_cryptors(self) -> list[FrameCryptor]:
        """A snapshot of the frame cryptors: one per track you publish and per
        remote track you are subscribed to, in an encrypted room.

        Raises:
            RoomClosedError: the room is closed.
            NativeError: the native core refused.

        Not a checkpoint (a synchronous call).
        """
        ring = (
            DEFAULT_KEY_RING_SIZE
            if self._options is None
            else self._options.key_provider_options.key_ring_size
        )
        return [
            FrameCryptor._create(
                self._session,
                ring,
                str(c.participant_identity),
                str(c.track_sid),
                int(c.key_index),
                bool(c.enabled),
            )
            for c in _list_cryptors(self._session)
        ]

    def __repr__(self) -> str:
        kind = "off" if self._options is None else self._options.encryption_type.name
        return f"<E2EEManager {kind} enabled={self._enabled}>"
