"""Reminders: cadence gaps and the six-month rule. They inform; they never change membership."""
