"""Request bodies: JSON read within the definition limits, and CSV read as the command line reads it.

A body is untrusted input: JSON nested deeper than any valid definition, or holding too many documents, is
refused from its text before it is decoded (Python's decoder would recurse through it), with the limit named.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from groups_consumer import definitions


class LimitedJSONParser(BaseParser):
    """``application/json`` checked against the definition limits before it is decoded (DefinitionError: 400
    naming the limit)."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return definitions.decode(stream.read())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc


class CsvParser(BaseParser):
    """``text/csv``: rows as the CLI reads them (first column)."""

    media_type = "text/csv"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> dict[str, Any]:
        try:
            return {"rows": list(csv.reader(io.StringIO(stream.read().decode("utf-8"))))}
        except (UnicodeDecodeError, csv.Error) as exc:
            raise serializers.ValidationError({"csv": [str(exc)]}) from exc
