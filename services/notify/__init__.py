"""notify: tells citizens by SMS and email when their request changes status."""
