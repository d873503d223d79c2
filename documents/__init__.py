"""Document storage, sniffing, hashing, scanning and bulk import. Plain Python."""
