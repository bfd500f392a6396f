"""Web users (secretaries, organisers, administrators): accounts, sign-in, sessions, rate limits."""
