"""Roster import (花名册): an .xlsx of members and their 易通卡 → members and card bindings."""
