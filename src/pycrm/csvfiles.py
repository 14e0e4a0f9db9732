"""Reading CSV files of unknown origin: encoding detection and streamed rows."""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from pathlib import Path

from pycrm.errors import ConfigurationError

__all__ = ["count_rows", "detect_encoding", "read_rows"]

_SAMPLE = 1 << 20


def detect_encoding(path: str | Path) -> str:
    """Guess a file's encoding from its first megabyte.

    A UTF-8 byte-order mark means ``utf-8-sig``; text that decodes as UTF-8 is
    ``utf-8``; text that decodes as GB18030 and holds CJK characters is
    ``gb18030``; anything else is read as ``latin-1`` (which never fails, so
    nothing is lost: odd characters show up in the rejects for a person to check).
    """
    with open(path, "rb") as stream:
        sample = stream.read(_SAMPLE)
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    # A multi-byte character may be cut at the end of the sample.
    for trim in range(4):
        try:
            sample[: len(sample) - trim].decode("utf-8")
            return "utf-8"
        except UnicodeDecodeError as exc:
            if exc.start < len(sample) - 4:
                break
    try:
        text = sample.decode("gb18030")
        if any("\u4e00" <= ch <= "\u9fff" for ch in text):
            return "gb18030"
    except UnicodeDecodeError:
        pass
    return "latin-1"


def read_rows(
    path: str | Path, encoding: str | None = None
) -> tuple[str, Iterator[dict[str, str]]]:
    """The encoding used and the file's rows as dicts, read lazily.

    Bytes that are not valid in the encoding are kept as surrogate escapes,
    so the importer can reject just the rows that hold them.
    """
    chosen = encoding or detect_encoding(path)
    try:
        codecs.lookup(chosen)
    except LookupError:
        raise ConfigurationError(f"unknown encoding {chosen!r}") from None

    def rows() -> Iterator[dict[str, str]]:
        with open(path, encoding=chosen, errors="surrogateescape", newline="") as stream:
            yield from csv.DictReader(stream)

    return chosen, rows()


def count_rows(path: str | Path) -> int:
    """Data lines in the file (lines minus the header), for a progress bar."""
    with open(path, "rb") as stream:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b""))
    return max(lines - 1, 0)
