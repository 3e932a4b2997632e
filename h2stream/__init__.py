"""h2stream: an HTTP/2 server for streaming large data, where flow control is the backpressure."""

__version__ = "0.1.0"
