"""Names the network accepts, without importing torch (manifests are checked without it)."""

ACTIVATION_NAMES = ("relu", "gelu", "silu", "tanh", "elu")
NORM_NAMES = ("layer", "batch", None)
