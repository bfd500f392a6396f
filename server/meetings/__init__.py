"""Meetings beyond the check-in: 会议记录 (minutes, attachments, sign-off), monthly series of events
and the printable 签到表."""
