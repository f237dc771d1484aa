"""What rethink needs from the operating system: file locks and process identities (the bottom floor)."""
