"""Reminders that reach people: the outbox, e-mail over SMTP, signed group-robot webhooks,
daily digests and meeting notices (会议通知)."""
