"""Electronic ledgers (电子台账): per organisation and period, per member, and their exports."""
