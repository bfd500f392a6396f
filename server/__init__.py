"""Attendance server: FastAPI + SQLModel, one folder per domain."""
