"""The service runtime: run an MQTT process as a well-behaved service."""
