"""rulectl: keeps a Linux Docker host stable by declarative rules."""
