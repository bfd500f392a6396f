"""Supervision (督查督办): rule families that find what slipped, reminders with a life, escalation.

Each family module turns the state of the whole city (or a subtree) into :class:`Finding` s with
set-based queries; :mod:`server.supervision.service` keeps one stored reminder per finding
identity, resolves those whose finding no longer appears, and escalates the unhandled ones.
"""
