"""Reading CSV files of unknown origin: encoding detection and streamed rows."""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from pathlib import Path

from pycrm.errors import ConfigurationError, ValidationError

__all__ = ["CsvRow", "count_rows", "detect_encoding", "read_rows"]

_SAMPLE = 1 << 20


def detect_encoding(path: str | Path) -> str:
    """Guess a file's encoding from its first megabyte.

    A UTF-8 byte-order mark means ``utf-8-sig``. Otherwise the sample is judged
    line by line: ``utf-8`` when its lines with non-ASCII text are mostly valid
    UTF-8 (a few broken lines are then rejected one by one, not the whole file
    misread); ``gb18030`` when it decodes as GB18030 into CJK characters made of
    two high bytes, as Chinese text is (Latin-1 text like ``Müller`` also decodes
    as GB18030, but pairs a high byte with an ASCII letter); else ``latin-1``,
    which never fails, so nothing is lost: odd characters show up for a person
    to check.
    """
    with open(path, "rb") as stream:
        sample = stream.read(_SAMPLE)
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    lines = sample.split(b"\n")
    if len(sample) == _SAMPLE and len(lines) > 1:
        lines.pop()  # the last line may be cut short, even inside a character
    utf8 = broken = 0
    for line in lines:
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
            utf8 += 1
        except UnicodeDecodeError:
            broken += 1
    if utf8 >= broken:
        return "utf-8"
    if _looks_like_gb18030(b"\n".join(lines)):
        return "gb18030"
    return "latin-1"


def _looks_like_gb18030(sample: bytes) -> bool:
    """Whether ``sample`` decodes as GB18030 and reads like Chinese rather than Latin-1."""
    try:
        sample.decode("gb18030")
    except UnicodeDecodeError:
        return False
    high = low = 0  # two-byte characters by their second byte
    i = 0
    while i < len(sample):
        if sample[i] < 0x80:
            i += 1
            continue
        trail = sample[i + 1] if i + 1 < len(sample) else 0
        if 0x30 <= trail <= 0x39:  # a four-byte sequence
            i += 4
            continue
        if trail >= 0x80:
            high += 1
        else:
            low += 1
        i += 2
    return high > 0 and low * 4 <= high


class CsvRow(dict[str, str]):
    """One record of a CSV file: the header's columns, and where it came from.

    :attr:`line` is the file line the record starts on (the header is line 1;
    blank lines and line breaks inside quoted values count). :attr:`missing`
    names the header's columns the record had no value for; :attr:`surplus`
    holds the values beyond the header's columns.
    """

    __slots__ = ("line", "missing", "surplus")

    def __init__(
        self,
        values: dict[str, str],
        line: int,
        missing: tuple[str, ...] = (),
        surplus: tuple[str, ...] = (),
    ) -> None:
        super().__init__(values)
        self.line = line
        self.missing = missing
        self.surplus = surplus


def read_rows(path: str | Path, encoding: str | None = None) -> tuple[str, Iterator[CsvRow]]:
    """The encoding used and the file's records as :class:`CsvRow` dicts, read lazily.

    Bytes that are not valid in the encoding are kept as surrogate escapes,
    so the importer can reject just the rows that hold them (and write their
    bytes back unchanged to a rejects file opened with ``errors="surrogateescape"``).

    Blank lines before the header are skipped.

    :raises ConfigurationError: for an unknown encoding name.
    :raises ValidationError: (field ``file``) for a file without a header row:
        empty, or blank lines only.
    """
    chosen = encoding or detect_encoding(path)
    try:
        codecs.lookup(chosen)
    except LookupError:
        raise ConfigurationError(f"unknown encoding {chosen!r}") from None
    with open(path, encoding=chosen, errors="surrogateescape", newline="") as stream:
        if _header(csv.reader(stream)) is None:
            raise ValidationError(
                "file",
                str(path),
                "has no header row: its first line must name the columns, a name column at least",
            )

    def rows() -> Iterator[CsvRow]:
        with open(path, encoding=chosen, errors="surrogateescape", newline="") as stream:
            reader = csv.reader(stream)
            header = _header(reader)
            if header is None:
                return
            width = len(header)
            while True:
                start = reader.line_num + 1
                record = next(reader, None)
                if record is None:
                    return
                if not record:
                    continue  # a blank line
                padded = record + [""] * (width - len(record))
                yield CsvRow(
                    dict(zip(header, padded, strict=False)),
                    start,
                    missing=tuple(header[len(record) :]),
                    surplus=tuple(record[width:]),
                )

    return chosen, rows()


def _header(reader: Iterator[list[str]]) -> list[str] | None:
    """The first record that holds any text, or None for a file of blank lines."""
    for record in reader:
        if any(cell.strip() for cell in record):
            return record
    return None


def count_rows(path: str | Path) -> int:
    """Data lines in the file (lines minus the header), for a progress bar."""
    with open(path, "rb") as stream:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b""))
    return max(lines - 1, 0)
