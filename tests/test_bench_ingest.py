"""`pathwatch bench ingest`'s memory and close phase on a small book: every window is
closed, ripened or not, and the report names each figure with its target."""

from __future__ import annotations

from pathwatch.bench.ingest import (
    IngestBench,
    MemoryAndClose,
    Throughput,
    measure_memory_and_close,
    report,
)


def test_the_memory_and_close_phase_closes_every_window_ripened_and_unripened() -> None:
    memory = measure_memory_and_close(40)
    assert isinstance(memory, MemoryAndClose)
    assert memory.windows_closed == 40
    assert memory.measurements == 40 * 100
    # 4 classes x 3 protocols, each with an aggregate and a detail lane
    assert memory.lanes == 40 * 12 and memory.lanes_reported == 40 * 24
    assert memory.ripen_ms > 0 and memory.close_ms > 0 and memory.cold_close_ms > 0
    assert memory.rss_ripened_mb >= memory.rss_start_mb
    assert memory.encoded_bytes > 0
    throughput = Throughput(1000, 0.01, 0.01)
    lines = report(IngestBench(throughput, throughput, throughput, 0, memory, 10, 100))
    text = "\n".join(lines)
    assert "window close at the deadline: 40 windows (960 lanes reported)" in text
    assert "ripening those windows in their lateness grace" in text
    assert "closing the same windows unripened" in text
