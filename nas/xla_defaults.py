"""XLA flags jaxnas puts in front of `XLA_FLAGS` before JAX starts its backend.

This jaxlib's XLA:CPU hands convolutions to YNNPACK by default. On the
convolutions of our spaces (one core, batch 64, 3×3 to 7×7 kernels, 8×8 to 32×32
inputs) YNNPACK's kernels took 1.2–1.6× the time of XLA's own (Eigen) kernels for the
forward pass and input gradient, and 1.7–14× for the kernel gradient; only a first
layer with 3 input channels ran its forward pass faster on YNNPACK. So convolutions go
to Eigen (matrix products stay with YNNPACK). The flag is added only

- when `XLA_FLAGS` does not already choose YNNPACK's fusion types (the user's choice wins),
- for jaxlib releases known to have the flag (XLA aborts on a flag it does not know),
- unless `JAXNAS_XLA_DEFAULTS=0`,

and it takes effect only if no JAX computation ran before `nas` was imported (XLA reads
its flags once, when the first array is made). Importing this module applies them;
`nas` imports it first.
"""
from __future__ import annotations

import importlib.metadata
import os

YNN_FUSION_TYPE = "xla_cpu_experimental_ynn_fusion_type"
EIGEN_CONVOLUTIONS = f"--{YNN_FUSION_TYPE}=-individual_convolution"
KNOWN = ((0, 10),)  # jaxlib (major, minor) releases whose XLA has YNN_FUSION_TYPE
OPT_OUT = "JAXNAS_XLA_DEFAULTS"


def with_defaults(flags: str, jaxlib_version: str) -> str:
    """`flags` (an XLA_FLAGS value) with jaxnas' defaults in front where they apply: in
    front, because XLA stops reading XLA_FLAGS at its first word without "--"."""
    release = tuple(int(part) for part in jaxlib_version.split(".")[:2] if part.isdigit())
    if YNN_FUSION_TYPE in flags or release not in KNOWN:
        return flags
    return f"{EIGEN_CONVOLUTIONS} {flags}".strip()


def apply() -> None:
    """Put the defaults into this process's XLA_FLAGS (and so its children's)."""
    if os.environ.get(OPT_OUT, "1") == "0":
        return
    try:
        version = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return
    os.environ["XLA_FLAGS"] = with_defaults(os.environ.get("XLA_FLAGS", ""), version)


apply()
