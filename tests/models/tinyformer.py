"""The tiny transformer family of issue 26 written with `nas.choices`: embed {16, 24, 32},
depth {1, 2}, heads {1, 2} per block (a block's heads exist only within the depth)."""
import jax.numpy as jnp
from flax import nnx

import nas
import spaces
from nas import layers


class Block(nnx.Module):
    def __init__(self, embed, heads, rngs):
        self.norm1, self.norm2 = layers.LayerNorm(embed), layers.LayerNorm(embed)
        self.attn = layers.MultiHeadAttention(embed, heads, 8, rngs=rngs)
        self.fc1 = layers.Dense(embed, 2 * embed, rngs=rngs)
        self.fc2 = layers.Dense(2 * embed, embed, rngs=rngs)

    def __call__(self, h, embed, heads, hidden):
        h = h + self.attn(self.norm1(h, embed), heads, embed)
        return h + self.fc2(nnx.gelu(self.fc1(self.norm2(h, embed), hidden)), embed)


class TinyFormer(nas.Supernet):
    def __init__(self, space, *, rngs):
        self.space = space
        self.embed, self.depth = space.choice("embed", [16, 24, 32]), space.choice("depth", range(1, 3))
        self.heads = tuple(space.choice(f"heads_{i}", [1, 2], when={"depth": range(i + 1, 3)})
                           for i in range(self.depth.max))
        self.inp = layers.Dense(space.input_shape[-1], self.embed.max, rngs=rngs)
        self.blocks = nnx.List([Block(self.embed.max, heads.max, rngs) for heads in self.heads])
        self.head = layers.Dense(self.embed.max, space.num_classes, rngs=rngs)

    def forward(self, x, probs, train=False):
        embed, hidden = self.embed.mask(probs), self.embed.map(lambda e: 2 * e).mask(probs)
        h, outputs = self.inp(x, embed), []
        for block, heads in zip(self.blocks, self.heads):
            h = block(h, embed, heads.mask(probs), hidden)
            outputs.append(h)
        return self.head(jnp.mean(self.depth.stack(probs, outputs), axis=1))


spaces.register_model("tinyformer", TinyFormer, input_shape=(8, 6), num_classes=3)
