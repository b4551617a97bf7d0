"""identity: citizens sign in with the mobile the registry ties to their national ID; sessions they can end."""
