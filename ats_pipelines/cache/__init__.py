"""The hot cache (Redis): the project's own server and the key layout."""
