"""The relay's watch counts what the broker holds on every topic it is asked about."""

from __future__ import annotations

from funnel_common.kafka import RecordsWatch, new_producer
from funnel_common.settings import CommonSettings


async def test_held_counts_each_topic_not_only_the_first_one_asked(
    topics: CommonSettings,
) -> None:
    producer = new_producer(topics)
    await producer.start()
    try:
        for topic, records in (("funnel.leads", 2), ("funnel.deals", 3), ("funnel.accounts", 1)):
            for number in range(records):
                await producer.send_and_wait(topics.topic(topic), b"x", key=str(number).encode())
    finally:
        await producer.stop()
    watch = RecordsWatch(topics)

    try:
        held = [await watch.held(topic) for topic in ("funnel.leads", "funnel.deals")]
        held.append(await watch.held("funnel.accounts"))
    finally:
        await watch.close()

    # A topic the watch's consumer had no metadata for used to count as empty, so the
    # relay republished it every few seconds, forever.
    assert held == [2, 3, 1]
