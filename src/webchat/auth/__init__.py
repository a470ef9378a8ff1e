"""Users, API tokens and browser sessions (security.md: "Users, passwords, tokens")."""
