"""Real servers for tests: a private Redis, an Appwrite test server, a Kubo RPC test server."""
