"""Card bindings: a member's 易通卡, known to the server only as keyed digests and masked forms;
bound by an administrator or by tapping it at a kiosk in enrol mode (刷卡绑定, ``tap_binding``)."""
