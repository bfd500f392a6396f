"""Attendance (member × event) and the sign-in sheet."""
