"""The domain: events, commands, the reconciliation aggregate and matching rules. No infrastructure here."""
