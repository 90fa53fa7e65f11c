"""The production process layout (code server, webserver, daemon, streaming) and its supervisor."""
