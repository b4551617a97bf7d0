"""Real servers that stand in for the outside world (agencies, SMS provider, mail) in dev and tests."""
