"""``_traffic.compact``: the journal in 256-character tags (the ALB provider's rule tags)."""

from __future__ import annotations

import pytest
from ansible_collections.strata.deploy.plugins.module_utils._traffic import compact
from ansible_collections.strata.deploy.plugins.module_utils._traffic import journal as jr
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import JournalError
from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import READY, ServerState

RULE = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/web/1/2/3"


def journal(steps: int, message: str = "") -> jr.Journal:
    state = {RULE: {"blue": ServerState(999, READY), "green": ServerState(0, READY)}}
    doc = jr.new_journal("web-42", current=state, who="deploy@ci")
    for index in range(steps):
        after = {RULE: {"blue": ServerState(999, READY), "green": ServerState(index + 1, READY)}}
        doc = jr.advance(
            doc,
            step_index=index,
            after=after,
            who="deploy@ci",
            gates=(jr.GateResult("error_ratio", True, "0.004 <= max 0.01"),),
            message=message,
        )
    return doc


def test_round_trip_keeps_the_resume_fields_and_fits_the_limits() -> None:
    doc = journal(4, "canary 25%")
    tags = compact.encode_tags(jr.dumps(doc))
    back = jr.loads(compact.decode_tags(tags))

    assert len(tags) <= compact.MAX_CHUNKS + 1
    assert all(len(v) <= 256 and len(k) <= 128 for k, v in tags.items())
    assert (back.rollout_id, back.phase, back.step_index, back.desired, back.last_safe) == (
        doc.rollout_id,
        doc.phase,
        doc.step_index,
        doc.desired,
        doc.last_safe,
    )
    assert [e.action for e in back.events] == [e.action for e in doc.events]
    assert jr.resume_decision(back, jr.RESUME) == jr.resume_decision(doc, jr.RESUME)


def test_a_long_journal_keeps_the_newest_events_that_fit() -> None:
    doc = journal(300, "x" * 500)
    tags = compact.encode_tags(jr.dumps(doc), max_chunks=6)
    back = jr.loads(compact.decode_tags(tags))

    assert len(tags) <= 7
    assert 0 < len(back.events) < len(doc.events)
    assert back.events[-1].step_index == 299 and len(back.events[-1].message) == compact.MAX_TEXT
    assert back.desired == doc.desired


def test_no_header_is_no_journal_and_stale_chunks_are_found() -> None:
    assert compact.decode_tags({"team": "web"}) is None
    long_tags = compact.encode_tags(jr.dumps(journal(60, "y" * 100)))
    short_tags = compact.encode_tags(jr.dumps(journal(0)))
    merged = {**long_tags, **short_tags}
    assert jr.loads(compact.decode_tags(merged)).step_index == -1  # extra chunks are ignored
    assert compact.stale_keys(merged, short_tags) == sorted(set(long_tags) - set(short_tags))


@pytest.mark.parametrize("tamper", ["drop", "edit", "header"])
def test_a_torn_journal_is_an_error(tamper: str) -> None:
    tags = compact.encode_tags(jr.dumps(journal(3)))
    if tamper == "drop":
        tags.pop(compact.chunk_key(0))
    elif tamper == "edit":
        tags[compact.chunk_key(0)] = "A" + tags[compact.chunk_key(0)][1:]
    else:
        tags[compact.HEADER_KEY] = "v9 1 0"
    with pytest.raises(JournalError):
        compact.decode_tags(tags)
