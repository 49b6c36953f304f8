"""Password hashing with argon2id; hashes never leave the persistence layer."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """Hash a password for storage (argon2id, random salt)."""
    return _hasher.hash(password)


def hash_passwords(
    passwords: Sequence[str], *, workers: int | None = None, progress: Callable[[int], None] | None = None
) -> list[str]:
    """Hash many passwords in parallel threads (argon2 releases the GIL), in order; ``progress(n)`` after each."""
    if not passwords:
        return []
    count = workers or min(len(passwords), os.cpu_count() or 1)
    if count <= 1:
        hashes = []
        for password in passwords:
            hashes.append(hash_password(password))
            if progress is not None:
                progress(1)
        return hashes
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="herald-hash") as pool:
        hashes = []
        for digest in pool.map(hash_password, passwords):
            hashes.append(digest)
            if progress is not None:
                progress(1)
        return hashes


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password against a stored hash; False for users without a password."""
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
