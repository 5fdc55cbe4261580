"""The extension points: criterion types and backend clients, discovered through entry points."""
