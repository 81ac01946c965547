"""jaxnas' XLA defaults: the flag string, and that a process importing `nas` compiles its
convolutions with XLA's own kernels (not YNNPACK's) unless told otherwise."""
import os
import subprocess
import sys

import pytest

from nas import xla_defaults

FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def test_flags_go_in_front_unless_chosen_or_unknown():
    assert xla_defaults.with_defaults("", "0.10.2") == FLAG
    # In front: XLA stops reading at a bare word such as intra_op_parallelism_threads=1.
    assert xla_defaults.with_defaults("--a=1 b=2", "0.10.0") == f"{FLAG} --a=1 b=2"
    chosen = "--xla_cpu_experimental_ynn_fusion_type=individual_dot"
    assert xla_defaults.with_defaults(chosen, "0.10.2") == chosen
    assert xla_defaults.with_defaults("--a=1", "0.9.1") == "--a=1"    # a release without the flag
    assert xla_defaults.with_defaults("--a=1", "0.11.0") == "--a=1"   # not known to have it


CHECK = """
import nas, jax, jax.numpy as jnp
x, w = jnp.ones((8, 16, 16, 32)), jnp.ones((7, 7, 32, 64))
conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                                         dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
print('__ynn_fusion' in conv.lower(x, w).compile().as_text())
"""


@pytest.mark.parametrize("opt_out, ynn", [(None, False), ("0", True)])
def test_importing_nas_sends_convolutions_to_xla_kernels(opt_out, ynn):
    import importlib.metadata
    if xla_defaults.with_defaults("", importlib.metadata.version("jaxlib")) == "":
        pytest.skip("this jaxlib is not one the flag is known for")
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_defaults.OPT_OUT)}
    if opt_out is not None:
        env[xla_defaults.OPT_OUT] = opt_out
    out = subprocess.run([sys.executable, "-c", CHECK], env={**env, "JAX_PLATFORMS": "cpu"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(ynn)
