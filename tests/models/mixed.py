"""A module choice (`nas.Branches`): the block is an MLP or an attention block, same shapes."""
import jax.numpy as jnp
from flax import nnx

import nas
import spaces
from nas import layers


class MLPBlock(nnx.Module):
    def __init__(self, width, rngs):
        self.fc1 = layers.Dense(width, 2 * width, rngs=rngs)
        self.fc2 = layers.Dense(2 * width, width, rngs=rngs)

    def __call__(self, h):
        return h + self.fc2(nnx.relu(self.fc1(h)))


class AttentionBlock(nnx.Module):
    def __init__(self, width, rngs):
        self.norm, self.attn = layers.LayerNorm(width), layers.MultiHeadAttention(width, 2, 8, rngs=rngs)

    def __call__(self, h):
        return h + self.attn(self.norm(h))


class Mixed(nas.Supernet):
    def __init__(self, space, *, rngs):
        self.space = space
        self.inp = layers.Dense(space.input_shape[-1], 16, rngs=rngs)
        self.block = nas.Branches(space.choice("block", ["mlp", "attention"]), {
            "mlp": lambda: MLPBlock(16, rngs), "attention": lambda: AttentionBlock(16, rngs)})
        self.head = layers.Dense(16, space.num_classes, rngs=rngs)

    def forward(self, x, probs, train=False):
        return self.head(jnp.mean(self.block(probs, self.inp(x)), axis=1))


spaces.register_model("mixed_blocks", Mixed, input_shape=(8, 6), num_classes=3)
