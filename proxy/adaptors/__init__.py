"""Client-protocol adaptors: parse a client's request, render responses, streams and errors."""
