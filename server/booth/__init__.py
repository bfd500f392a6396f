"""留言亭: representatives (党代表), one-time member links opened by a tap, messages and replies."""
