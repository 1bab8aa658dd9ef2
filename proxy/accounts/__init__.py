"""The accounts library (service.Accounts): users, keys, limits, top-ups, credits with a
reason, codes, sessions and transfers, for the CLI, the JSON API and the pages."""
