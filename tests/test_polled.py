"""A polled batch decodes a few messages per step (in the waits of the batch before) and the rest on demand,
with the same outcome as decoding it at once; a revocation takes its partitions' messages out."""

import pytest
from confluent_kafka import KafkaError, Message

from groups_consumer.errors import DecodeError
from groups_consumer.pipeline.decode import EventDecoder
from groups_consumer.pipeline.facts_update import Asserted
from groups_consumer.pipeline.polled import STEP, PolledBatch
from groups_consumer.plugins.events import Origin, PlatformEvent
from tests import lms
from tests.facts import NOW

DECODER = EventDecoder()


def message(partition: int, offset: int, user_id: int = 1) -> Message:
    _key, value, headers = lms.login(user_id, NOW).wire()
    return Message(topic="events", partition=partition, offset=offset, value=value, headers=headers)


def test_steps_decode_a_few_messages_each_and_the_rest_is_decoded_on_demand():
    messages = [message(0, n, user_id=n + 1) for n in range(STEP + 3)]
    batch = PolledBatch(messages, DECODER)
    assert batch.step() is True  # STEP decoded, 3 left
    assert batch.step() is False
    assert batch.step() is False  # nothing left: a step does nothing
    decoded = batch.decoded()
    assert [d.origin for d in decoded] == [Origin("events", 0, n) for n in range(STEP + 3)]
    assert [d.outcome.data["user"]["id"] for d in decoded if isinstance(d.outcome, PlatformEvent)] == list(
        range(1, STEP + 4))


def test_decoding_ahead_or_at_once_gives_the_same_outcomes_and_errors_are_kept_not_raised():
    junk = Message(topic="events", partition=1, offset=7, value=b"junk", headers=[])
    end = Message(topic="events", partition=0, offset=3, error=KafkaError(KafkaError._PARTITION_EOF))
    messages = [message(0, 0), junk, end, message(0, 1, user_id=2)]
    ahead, at_once = PolledBatch(messages, DECODER), PolledBatch(messages, DECODER)
    ahead.step()
    outcomes = [(d.origin, type(d.outcome)) for d in ahead.decoded()]
    assert outcomes == [(d.origin, type(d.outcome)) for d in at_once.decoded()] == [
        (Origin("events", 0, 0), PlatformEvent), (Origin("events", 1, 7), DecodeError),
        (Origin("events", 0, 1), PlatformEvent)]  # the partition end is left out
    assert ahead.decoded()[1].outcome.reason == "missing_header"


def test_messages_of_revoked_partitions_are_dropped_decoded_or_not():
    messages = [message(n % 2, n) for n in range(STEP * 2)]
    batch = PolledBatch(messages, DECODER)
    batch.step()  # the first STEP messages, of both partitions
    batch.drop({("events", 1)})
    assert [m.partition() for m in batch.messages] == [0] * STEP
    assert [d.origin.offset for d in batch.decoded()] == list(range(0, STEP * 2, 2))


def test_a_replay_leaves_out_the_messages_before_its_start():
    batch = PolledBatch([message(0, 0), message(0, 1)], DECODER, is_before=lambda m: m.offset() == 0)
    assert [d.origin.offset for d in batch.decoded()] == [1]


def test_messages_polled_later_join_the_batch_undecoded():
    batch = PolledBatch([message(0, 0)], DECODER)
    batch.step()
    batch.extend([message(0, 1, user_id=2)])
    assert [d.outcome.data["user"]["id"] for d in batch.decoded()] == [1, 2]


def test_a_decoder_bug_in_a_step_is_raised_in_the_batch_s_own_turn(monkeypatch):
    """Not inside the statement of the batch whose wait the step fills (it would take it for its own events'
    failure and dead-letter them)."""
    batch = PolledBatch([message(0, 0), message(0, 1, user_id=2), message(0, 2, user_id=3)], DECODER)
    real = DECODER.decode

    def buggy(value, headers, origin=None):
        if origin.offset == 1:
            raise RuntimeError("a bug")
        return real(value, headers, origin)
    monkeypatch.setattr(DECODER, "decode", buggy)
    assert batch.step() is False and batch.step() is False  # stalled at the second message, nothing raised
    with pytest.raises(RuntimeError, match="a bug"):
        batch.decoded()
    monkeypatch.setattr(DECODER, "decode", real)
    assert [d.origin.offset for d in batch.decoded()] == [0, 1, 2]  # nothing skipped


def assert_user(event: PlatformEvent) -> Asserted:
    """A stand-in for ``FactUpdater.asserted``: the user id as the only update (no database needed)."""
    return Asserted([event.data["user"]["id"]], [])


def test_once_every_message_is_decoded_steps_find_the_facts_of_its_events():
    junk = Message(topic="events", partition=1, offset=7, value=b"junk", headers=[])
    messages = [message(0, n, user_id=n + 1) for n in range(STEP)] + [junk] + [
        message(0, n, user_id=n + 1) for n in range(STEP, STEP + 3)]
    batch = PolledBatch(messages, DECODER, assert_facts=assert_user)
    assert batch.step() is True and batch.asserted == {}  # STEP messages decoded
    assert batch.step() is True and len(batch.asserted) == 0  # the rest decoded
    assert batch.step() is True and len(batch.asserted) == STEP  # the first STEP messages' facts
    assert batch.step() is False  # the last three (the junk message has no event, and no facts)
    assert batch.asserted == {Origin("events", 0, n): Asserted([n + 1], []) for n in range(STEP + 3)}
    assert batch.step() is False


def test_facts_found_ahead_are_dropped_with_their_revoked_partitions():
    batch = PolledBatch([message(n % 2, n, user_id=n + 1) for n in range(6)], DECODER, assert_facts=assert_user)
    batch.step()
    batch.step()
    batch.drop({("events", 1)})
    assert set(batch.asserted) == {Origin("events", 0, n) for n in (0, 2, 4)}
    batch.extend([message(1, 9, user_id=10)])  # polled since: decoded, then its facts found, by later steps
    assert batch.step() is True and batch.step() is False
    assert set(batch.asserted) == {Origin("events", 0, n) for n in (0, 2, 4)} | {Origin("events", 1, 9)}


def test_a_fact_source_bug_in_a_step_stops_the_steps_and_leaves_the_event_to_the_batch_s_turn():
    def buggy(event: PlatformEvent) -> Asserted:
        if event.data["user"]["id"] == 2:
            raise RuntimeError("a bug")
        return assert_user(event)
    batch = PolledBatch([message(0, n, user_id=n + 1) for n in range(3)], DECODER, assert_facts=buggy)
    assert batch.step() is True and batch.step() is False and batch.step() is False
    assert set(batch.asserted) == {Origin("events", 0, 0)}  # nothing raised; the others' facts found in turn
    assert len(batch.decoded()) == 3
