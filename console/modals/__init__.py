"""Modal screens: the permission request, confirmations."""
