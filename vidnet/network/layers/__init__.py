"""Building blocks shared by the network families, one concept per module."""
