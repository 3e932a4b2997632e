"""The runtime: server and listeners, workers and their supervisor, TLS, pid file and memory
trim."""
