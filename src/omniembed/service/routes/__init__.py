"""One router per protocol face, plus operations (health, readiness, metrics)."""
