"""Leave requests (请假): asked before an event, decided by a secretary."""
