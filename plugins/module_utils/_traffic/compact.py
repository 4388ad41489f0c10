# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout journal in a few small strings: how the ALB provider keeps it in the tags of a listener rule.

AWS limits a tag value to 256 characters and a resource to 50 tags, so the journal (``journal.py``) is stored as:

- ``strata:journal`` = ``v1 <chunks> <crc32 hex>``: the header, written in the same AddTags call as the chunks;
- ``strata:journal:00`` .. ``strata:journal:NN``: base64 of the zlib-compressed JSON, 256 characters each,
  at most ``MAX_CHUNKS`` (24) of them, which leaves 25 tags of the rule to its owners.

What is kept: every field the resume decision uses (rollout id, phase, step index, the desired and last safe
weights, timestamps) whole; of the events, the newest ones that fit, each without its ``before``/``after`` weights
(the desired/last safe states carry what a resume needs) and with messages and gate details cut to
``MAX_TEXT`` characters. A 4-step rollout with gates fits in 2-4 chunks with every event. The full event list is
in the result of the run that wrote it (``events`` of ``strata.deploy.canary``).

Reading checks the header's chunk count and CRC: chunks left from an older, longer journal are ignored, and a torn
or edited journal is a ``JournalError`` (the caller then changes nothing).
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Mapping
from typing import Any

from ansible_collections.strata.deploy.plugins.module_utils._traffic import journal as jr
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import JournalError

HEADER_KEY = "strata:journal"
CHUNK_PREFIX = "strata:journal:"
FORMAT = "v1"
CHUNK_SIZE = 256
MAX_CHUNKS = 24
MAX_TEXT = 120


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def _compact_doc(journal: jr.Journal, keep_events: int) -> dict[str, Any]:
    doc = jr.to_dict(journal)
    events = doc["events"][-keep_events:] if keep_events else []
    for event in events:
        event["before"] = None
        event["after"] = None
        event["message"] = _cut(event["message"])
        for gate in event["gates"]:
            gate["detail"] = _cut(gate["detail"])
    doc["events"] = events
    return doc


def _encode(doc: Mapping[str, Any]) -> str:
    raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def chunk_key(index: int) -> str:
    return f"{CHUNK_PREFIX}{index:02d}"


def encode_tags(text: str, *, max_chunks: int = MAX_CHUNKS, chunk_size: int = CHUNK_SIZE) -> dict[str, str]:
    """``{tag key: value}`` holding the journal ``text`` (JSON as ``journal.dumps`` writes it), newest events first
    to be kept when it does not fit whole."""
    journal = jr.loads(text)
    keep = len(journal.events)
    while True:
        blob = _encode(_compact_doc(journal, keep))
        chunks = [blob[i : i + chunk_size] for i in range(0, len(blob), chunk_size)]
        if len(chunks) <= max_chunks:
            break
        if keep == 0:
            raise JournalError(
                "tags", f"the journal needs {len(chunks)} tags of {chunk_size} characters even without events"
            )
        keep -= 1
    tags = {chunk_key(i): chunk for i, chunk in enumerate(chunks)}
    tags[HEADER_KEY] = f"{FORMAT} {len(chunks)} {zlib.crc32(blob.encode()):08x}"
    return tags


def is_journal_key(key: str) -> bool:
    return key == HEADER_KEY or key.startswith(CHUNK_PREFIX)


def stale_keys(current: Mapping[str, str], written: Mapping[str, str]) -> list[str]:
    """Journal tags in ``current`` that ``written`` does not hold (chunks of an older, longer journal)."""
    return sorted(key for key in current if is_journal_key(key) and key not in written)


def decode_tags(tags: Mapping[str, str]) -> str | None:
    """The journal JSON text kept in ``tags``, or ``None`` when there is none (``JournalError`` when it is torn)."""
    header = tags.get(HEADER_KEY)
    if header is None:
        return None
    parts = header.split()
    if len(parts) != 3 or parts[0] != FORMAT or not parts[1].isdigit():
        raise JournalError("tags", f"the header tag {HEADER_KEY} is {header!r}, expected '{FORMAT} <chunks> <crc32>'")
    count = int(parts[1])
    missing = [chunk_key(i) for i in range(count) if chunk_key(i) not in tags]
    if missing:
        raise JournalError("tags", f"chunk tag(s) {', '.join(missing)} are missing")
    blob = "".join(tags[chunk_key(i)] for i in range(count))
    if f"{zlib.crc32(blob.encode()):08x}" != parts[2]:
        raise JournalError("tags", "the chunks do not match the header's CRC (a torn or edited journal)")
    try:
        raw = zlib.decompress(base64.b64decode(blob, validate=True))
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise JournalError("tags", f"the chunks cannot be decoded ({exc})") from None
    return jr.dumps(jr.loads(raw))
