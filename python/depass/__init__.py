"""depass: exact DePass (decomposed forward pass) attributions for transformer LMs.

A thin package around the C++ extension ``depass._depass`` (pybind11): every number comes
from the header-only C++ library; this package only re-exports it.

    import depass
    model = depass.load("stories260K.bin")                 # + the tok512.bin next to it
    result = model.decompose("Once upon a time", init=depass.Tokens())
    scores = result.component_logits(position=4, target=267)  # one per token, then the bias
"""

from ._depass import (  # noqa: F401  (re-exported API)
    Boundary,
    Custom,
    DecompositionFloat32,
    DecompositionFloat64,
    FormatError,
    Heads,
    Initialisation,
    ModelFloat32,
    ModelFloat64,
    Module,
    Neurons,
    Subspaces,
    Tokens,
    __version__,
    bf16_available,
    load,
    reuse_freed_memory,
    set_threads,
    threads,
)

FormatError.__module__ = __name__

#: Either precision's model / decomposition class, for isinstance checks.
Model = (ModelFloat64, ModelFloat32)
Decomposition = (DecompositionFloat64, DecompositionFloat32)

__all__ = [
    "Boundary", "Custom", "Decomposition", "DecompositionFloat32", "DecompositionFloat64", "FormatError",
    "Heads", "Initialisation", "Model", "ModelFloat32", "ModelFloat64", "Module", "Neurons", "Subspaces",
    "Tokens", "bf16_available", "load", "reuse_freed_memory", "set_threads", "threads",
]
