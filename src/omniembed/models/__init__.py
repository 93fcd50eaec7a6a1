"""Model families (how to build each network) and the built-in model specs."""
