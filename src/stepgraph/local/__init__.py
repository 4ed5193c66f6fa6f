"""Local stand-ins for AWS and the provider: dev and test tooling, never imported by the runtime."""
