"""Synthetic data: a city's party organisations, members, cards and a year of meetings and taps,
for benchmarks and demos (``ecard admin synth``). Never mixed with real data: it only writes into
an empty database, and says so in the audit log."""
