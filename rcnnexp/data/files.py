"""Finding a dataset's files, fetching them where allowed, and saying clearly when they are
missing or unreadable (a :class:`DataError`: one line, no traceback)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rcnnexp.errors import DataError

log = logging.getLogger("rcnnexp")


def missing_files(folder: Path, files: Sequence[str]) -> list[str]:
    return [f for f in files if not (folder / f).is_file()]


def ensure_files(name: str, folder: Path, files: Sequence[str], download: bool,
                 fetch: Callable[[], None] | None, source: str) -> None:
    """Make sure ``folder`` holds ``files``: fetch them when allowed, else a clear error.

    ``source`` says where the files come from (URL, archive name); ``fetch`` is None for a
    dataset that cannot be downloaded automatically.
    """
    try:
        missing = missing_files(folder, files)
    except PermissionError as err:
        raise DataError(unreadable(name, err)) from None
    if not missing:
        return
    if download and fetch is not None:
        log.info("%s: %s missing in %s; downloading (%s)", name, ", ".join(missing), folder,
                 source)
        try:
            fetch()
        except Exception as err:  # network, disk, checksum: all a user must act on
            raise DataError(
                f"{name}: {describe_missing(missing)} in {folder}, and downloading failed "
                f"({type(err).__name__}: {one_line(err)}). Get {source} by hand and put it "
                f"there, or point dataset.root (or $RCNNEXP_DATA) at a folder that holds it"
            ) from None
        missing = missing_files(folder, files)
        if not missing:
            return
        raise DataError(f"{name}: the download did not produce {describe_missing(missing)} "
                        f"in {folder}; expected {source}")
    hint = ("set dataset.download=true to fetch it, or get " if fetch is not None
            else "it cannot be downloaded automatically: get ")
    raise DataError(f"{name} not found: {describe_missing(missing)} in {folder} (under "
                    f"dataset.root); {hint}{source}, or point dataset.root (or $RCNNEXP_DATA) "
                    "at a folder that holds it")


def absent(folder: Path, files: Sequence[str], download: bool) -> str | None:
    """:meth:`DataModule.missing <rcnnexp.data.base.DataModule.missing>` for a dataset that
    needs ``files`` in ``folder`` and fetches them when ``download`` (None: all there)."""
    try:
        missing = missing_files(folder, files)
    except PermissionError as err:
        return f"{folder} cannot be read ({err.strerror or 'permission denied'})"
    if not missing:
        return None
    return f"{folder} ({describe_missing(missing)}{fetch_note(download)})"


def fetch_note(download: bool) -> str:
    """What a dry run adds to missing files that the run would download."""
    return "; the job downloads it (dataset.download=true)" if download else ""


def describe_missing(missing: Sequence[str]) -> str:
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return f"no {shown}"


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def unreadable(name: str, err: OSError) -> str:
    """A file or folder of a dataset that exists but that this user may not read: the files
    are not damaged, so the advice is to fix the permissions, not to fetch them again."""
    where = err.filename or "a file"
    return (f"{name}: cannot read {where} ({err.strerror or 'permission denied'}); make the "
            "dataset's files readable by this user (chmod), or point dataset.root (or "
            "$RCNNEXP_DATA) at a copy you can read")


@contextmanager
def reading(name: str, where: Path, source: str) -> Iterator[None]:
    """Turn any failure while parsing a dataset's files into a clear :class:`DataError`."""
    try:
        yield
    except DataError:
        raise
    except PermissionError as err:
        raise DataError(unreadable(name, err)) from None
    except Exception as err:
        raise DataError(
            f"{name}: could not read the files in {where} ({type(err).__name__}: "
            f"{one_line(err)}); they look truncated or corrupt: delete them and download "
            f"again (dataset.download=true), or get {source}") from None
