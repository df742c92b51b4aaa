"""Keep Python's cyclic garbage collector out of the way of long-lived services.

A service that builds large tables at start (the enforcer's machines for every
lane, the aggregator's accumulators) and then allocates a little per message
would otherwise have the collector re-scan those tables over and over: with
100,000 lanes that cost more than the judgement itself. `settle_heap` collects
once, moves everything alive into the permanent generation (`gc.freeze`), and
raises the young-generation threshold so collections are fewer and larger.
Wire messages are msgspec Structs with `gc=False`, so decoding them does not
count towards collections at all.
"""

import gc

#: Allocations of tracked objects between two young-generation collections.
YOUNG_THRESHOLD = 50_000


def settle_heap(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Collect, freeze what is alive now, and make young collections rarer."""
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young_threshold, young), middle, old)
