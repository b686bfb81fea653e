"""The local stack: the real parts and the named stand-ins the demo and the tests run on (moto for AWS,
kwok nodes, the tiny model on vLLM CPU)."""
