"""Response body sources and encodings: producer-fed chunks, file ranges, compression and its
budget. They frame what the scheduler allows and no more."""
