"""Password hashing: argon2id through argon2-cffi's :class:`~argon2.PasswordHasher`.

The defaults are argon2-cffi's RFC 9106 low-memory profile (time_cost=3, memory_cost=64 MiB,
parallelism=4). :func:`make_hasher` builds a cheaper hasher for unit tests that add many users; a hash
records its own parameters, so any hasher verifies any hash and :func:`needs_rehash` tells when a stored
hash was made with parameters other than the hasher's.
"""

from __future__ import annotations

from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, UnsupportedParametersError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY

TIME_COST: Final = RFC_9106_LOW_MEMORY.time_cost
MEMORY_COST_KIB: Final = RFC_9106_LOW_MEMORY.memory_cost
PARALLELISM: Final = RFC_9106_LOW_MEMORY.parallelism


def make_hasher(
    time_cost: int = TIME_COST, memory_cost: int = MEMORY_COST_KIB, parallelism: int = PARALLELISM
) -> PasswordHasher:
    """An argon2id hasher; without arguments, the RFC 9106 low-memory profile every deployment uses."""
    return PasswordHasher(
        time_cost=time_cost,
        memory_cost=memory_cost,
        parallelism=parallelism,
        hash_len=RFC_9106_LOW_MEMORY.hash_len,
        salt_len=RFC_9106_LOW_MEMORY.salt_len,
        type=RFC_9106_LOW_MEMORY.type,
    )


DEFAULT_HASHER: Final = make_hasher()


def hash_password(password: str, *, hasher: PasswordHasher | None = None) -> str:
    """The encoded argon2id hash (``$argon2id$v=19$m=…,t=…,p=…$salt$hash``) of ``password``."""
    return (hasher or DEFAULT_HASHER).hash(password)


def verify_password(stored_hash: str, password: str, *, hasher: PasswordHasher | None = None) -> bool:
    """Whether ``password`` matches ``stored_hash``; False for a mismatch or a hash that is not argon2."""
    try:
        return (hasher or DEFAULT_HASHER).verify(stored_hash, password)
    except (VerificationError, InvalidHashError, UnsupportedParametersError, ValueError, TypeError):
        # ValueError covers text that cannot be encoded (a lone surrogate, a non-ASCII "hash").
        return False


def needs_rehash(stored_hash: str, *, hasher: PasswordHasher | None = None) -> bool:
    """Whether ``stored_hash`` was made with other parameters than the hasher's (or is not a valid hash)."""
    try:
        return (hasher or DEFAULT_HASHER).check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError, TypeError):
        return True
