"""The records of a text corpus file (``.txt``: one text a line; ``.jsonl``: strings or objects), read the
same way by ``omniembed embed --input`` in-process and by its sharded runner (``cli/scale``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omniembed.errors import ParameterInvalid

__all__ = ["Record", "Records", "read_records"]


@dataclass(frozen=True)
class Record:
    """One input of a text file: its line number, its id (the line number unless a JSONL object gives one)
    and its text, or the error that makes the line unusable."""

    line: int
    id: str
    value: Any

    def where(self) -> str:
        """The record's position in the CLI's terms: ``line 12``, plus the id where it is not the line."""
        return f"line {self.line}" if self.id == str(self.line) else f"line {self.line} (id={self.id})"


class Records(list[Record]):
    """The records of a file, and how many blank lines it had (skipped, and counted as skipped)."""

    blank: int = 0


def read_records(path: Path, column: str = "text") -> Records:
    """The records of a .txt (one text a line) or .jsonl (strings or {column, "id"}) file.

    Blank lines are skipped (their number is ``blank``); a JSONL line that does not parse is kept as an
    error in its place.
    """
    if not path.is_file():
        raise ParameterInvalid(f"--input {path} does not exist", param="input")
    jsonl = path.suffix.lower() in {".jsonl", ".ndjson"}
    records = Records()
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line.strip():
                records.blank += 1
                continue
            if not jsonl:
                records.append(Record(number, str(number), line))
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                problem = ParameterInvalid(f"not JSON ({exc.msg})", param="input", index=len(records))
                records.append(Record(number, str(number), problem))
                continue
            if isinstance(obj, dict):
                records.append(Record(number, str(obj.get("id", number)), obj.get(column)))
            else:
                records.append(Record(number, str(number), obj))
    return records
