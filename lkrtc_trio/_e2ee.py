"""End-to-end encryption: the options (``RoomOptions.encryption``), the key
provider and the frame cryptors of a connected room.

Names follow the official SDK (``E2EEOptions``, ``KeyProviderOptions``,
``KeyProvider``, ``E2EEManager``, ``FrameCryptor``); values are the native
core's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, final

from ._types import _Open

__all__ = [
    "DEFAULT_FAILURE_TOLERANCE",
    "DEFAULT_KEY_RING_SIZE",
    "DEFAULT_RATCHET_SALT",
    "DEFAULT_RATCHET_WINDOW_SIZE",
    "E2EEOptions",
    "EncryptionType",
    "KeyDerivationFunction",
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
