from __future__ import annotations

import gc

import pytest

from airflow_provider_capillary.ingestion.pipeline import ScheduledCollector, api_chunks


def test_scheduled_collector_freezes_collects_on_schedule_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("airflow_provider_capillary.ingestion.pipeline.time.monotonic", lambda: now[0])
    collections: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda *args: collections.append(1) or 0)
    assert gc.isenabled()
    with ScheduledCollector(interval=30) as collector:
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0, "what existed before the run is left out of collections"
        now[0] += 29
        collector.tick()
        assert collections == []
        now[0] += 1
        collector.tick()
        assert collections == [1]
        collector.tick()
        assert collections == [1], "the schedule restarts after a collection"
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_scheduled_collector_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    try:
        with ScheduledCollector():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_api_chunks_number_records_as_lines() -> None:
    chunks = list(api_chunks("capillary-api:customer", ({"n": n} for n in range(5)), chunk_size=2))
    assert [chunk.position[1] for chunk in chunks] == [2, 4, 5]
    assert [row.line for chunk in chunks for row in chunk.rows] == [1, 2, 3, 4, 5]
    assert chunks[-1].final and not chunks[0].final
    (empty,) = api_chunks("capillary-api:customer", [], chunk_size=2)
    assert empty.rows == [] and empty.final and empty.position == ("capillary-api:customer", 0)
