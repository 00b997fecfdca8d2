"""Real servers for tests: a private Redis, an Appwrite Storage test server, a Kubo RPC test server."""
