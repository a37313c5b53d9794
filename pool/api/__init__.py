"""The gRPC adapter over the domain core: servicers, conversions, status codes, metrics."""
