"""Card bindings: a member's 易通卡, known to the server only as keyed digests and masked forms."""
