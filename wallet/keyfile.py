"""One rule for every file that holds a secret: private to its owner, or refused.

Key files (a plain hex key or a v3 keystore), passphrase files and bearer-token
files are all read through ``read_secret_file``. As ssh does with its keys, a
file that group or others may read or write (any of the mode bits ``0o077``)
is refused, not warned about, with one line naming the file and the fix::

    the key file relayer.key is readable by other users (mode 0644); run: chmod 600 relayer.key

A secret that others could read is already spent, and one that others could
write can be swapped for theirs. The mode is taken from the opened file
(``fstat``), so the file checked is the file read; the secret never appears
in a message.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from farthing.wallet.errors import KeyFileError, WalletError

__all__ = ["SECRET_FILE_BYTES_MAX", "read_secret_file", "require_private_mode"]

SECRET_FILE_BYTES_MAX: Final = 64 * 1024
_GROUP_OTHER_BITS: Final = 0o077


def require_private_mode(
    path: Path, mode: int, *, what: str, error: type[WalletError] = KeyFileError
) -> None:
    """Raise ``error`` if ``mode`` lets group or others at the file; the message says ``chmod 600``."""
    loose = stat.S_IMODE(mode) & _GROUP_OTHER_BITS
    if not loose:
        return
    if loose & 0o044:
        who = "readable by other users"
    elif loose & 0o022:
        who = "writable by other users"
    else:
        who = "open to other users"
    raise error(
        f"the {what} {path} is {who} (mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
    )


def read_secret_file(
    path: Path,
    *,
    what: str,
    error: type[WalletError] = KeyFileError,
    bytes_max: int = SECRET_FILE_BYTES_MAX,
) -> str:
    """The text of a private regular file, or ``error`` with one line saying what is wrong.

    ``what`` names the file in messages ("key file", "passphrase file").
    """
    try:
        # O_NONBLOCK: a FIFO put where a key should be must not hang the command.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"the {what} {path} is not a regular file")
        require_private_mode(path, info.st_mode, what=what, error=error)
        if info.st_size > bytes_max:
            raise error(f"the {what} {path} is larger than {bytes_max} bytes")
        chunks: list[bytes] = []
        size = 0
        while size <= bytes_max:
            chunk = os.read(fd, bytes_max + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > bytes_max:
        raise error(f"the {what} {path} is larger than {bytes_max} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"the {what} {path} is not UTF-8 text") from None
