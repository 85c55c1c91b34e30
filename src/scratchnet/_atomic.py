"""Write a file so that readers see either the old or the new content, never half.

The content goes to a temporary file in the destination's directory (same
filesystem, so the rename is atomic), is flushed to disk, and then
:func:`os.replace` puts it in place. On any error the temporary file is
removed and the destination is untouched.
"""

import contextlib
import os
import tempfile


def _current_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files readable by the owner only; the result should get
# the permissions open() would give. The umask is read once, at import,
# because reading it means briefly setting it (process-wide).
_FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Context manager: a file object whose content replaces ``path`` on success.

    Parameters
    ----------
    path : str or os.PathLike
    mode : {"w", "wb"}
    **kwargs
        Passed to :func:`open` (e.g. ``encoding``, ``newline``).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: expected 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, _FILE_MODE)
        with open(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text):
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def atomic_write(path, write):
    """Atomically replace ``path`` with what ``write(file)`` writes to a binary file."""
    with atomic_open(path, "wb") as f:
        write(f)
