"""`vit`: an AutoFormer-like vision transformer space (inputs NHWC).

Patch embedding (non-overlapping `patch_size` patches) + learned positions;
pre-norm blocks of multi-head self-attention and an MLP; final LayerNorm, mean
over tokens, Dense. Choices: `embed_dim`, `depth`, per layer `num_heads_i` and
`mlp_ratio_i`. AutoFormer-T's choices are embed {192,216,240}, depth
{12,13,14}, heads {3,4}, ratio {3.5,4} with head width 64; the defaults here
divide widths by 4 (embed {48,54,60}, head width 16) and depths by ~3 so the
largest model is CPU-sized, keeping the head and MLP ratios.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

import nas
from nas import layers, masks
from spaces import register
from spaces.core import Space, check_sizes


def mlp_width(embed_dim, ratio) -> int:
    return int(ratio * embed_dim)


class Block(nnx.Module):
    def __init__(self, embed: int, heads: int, head_dim: int, hidden: int, *, rngs: nnx.Rngs):
        self.norm1 = layers.LayerNorm(embed)
        self.attn = layers.MultiHeadAttention(embed, heads, head_dim, rngs=rngs)
        self.norm2 = layers.LayerNorm(embed)
        self.fc1 = layers.Dense(embed, hidden, rngs=rngs)
        self.fc2 = layers.Dense(hidden, embed, rngs=rngs)

    def __call__(self, h, embed_mask, head_mask, hidden_mask):
        h = h + self.attn(self.norm1(h, embed_mask), head_mask, embed_mask)
        return h + self.fc2(jax.nn.gelu(self.fc1(self.norm2(h, embed_mask), hidden_mask)), embed_mask)


class ViTSupernet(nas.Supernet):
    def __init__(self, space: "ViTSpace", *, rngs: nnx.Rngs):
        self.space = space
        cfg, c = space.config, space.choices
        height, width, channels = space.input_shape
        p = cfg["patch_size"]
        embed = max(c["embed_dim"])
        self.patch = layers.Dense(p * p * channels, embed, rngs=rngs)
        tokens = (height // p) * (width // p)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (tokens, embed)))
        blocks = []
        for i in range(max(c["depth"])):
            hidden = max(mlp_width(e, r) for e in c["embed_dim"] for r in c[f"mlp_ratio_{i}"])
            blocks.append(Block(embed, max(c[f"num_heads_{i}"]), cfg["head_dim"], hidden, rngs=rngs))
        self.blocks = nnx.List(blocks)
        self.norm = layers.LayerNorm(embed)
        self.head = layers.Dense(embed, space.num_classes, rngs=rngs)

    def forward(self, x, probs, train: bool = False):
        """x: [batch, height, width, channels] → logits [batch, num_classes]."""
        c = self.space.choices
        p = self.space.config["patch_size"]
        b, height, width, channels = x.shape
        patches = x.reshape(b, height // p, p, width // p, p, channels).transpose(0, 1, 3, 2, 4, 5)
        patches = patches.reshape(b, (height // p) * (width // p), p * p * channels)
        embed_mask = masks.prefix_mask(probs["embed_dim"], c["embed_dim"], self.pos.shape[-1])
        h = self.patch(patches, embed_mask) + self.pos[...] * embed_mask
        outputs = []
        for i, block in enumerate(self.blocks):
            heads = block.attn.qkv.shape[2]
            head_mask = masks.prefix_mask(probs[f"num_heads_{i}"], c[f"num_heads_{i}"], heads)
            hidden_mask = masks.joint_prefix_mask(
                probs["embed_dim"], c["embed_dim"], probs[f"mlp_ratio_{i}"], c[f"mlp_ratio_{i}"],
                mlp_width, block.fc1.kernel.shape[1])
            h = block(h, embed_mask, head_mask, hidden_mask)
            outputs.append(h)
        depth = masks.depth_weights(probs["depth"], c["depth"], len(self.blocks))
        h = self.norm(masks.mixture(depth, outputs), embed_mask)
        return self.head(jnp.mean(h, axis=1))


class ViTSpace(Space):
    name = "vit"
    supernet_class = ViTSupernet
    default_input_shape = (32, 32, 3)
    default_num_classes = 10

    def __init__(self, embed_dims=(48, 54, 60), depths=(3, 4, 5), num_heads=(3, 4),
                 mlp_ratios=(3.5, 4.0), head_dim: int = 16, patch_size: int = 4, **kw):
        check_sizes("vit", {"embed_dims": tuple(embed_dims), "depths": tuple(depths),
                            "num_heads": tuple(num_heads), "head_dim": head_dim, "patch_size": patch_size},
                    {"mlp_ratios": tuple(mlp_ratios)})
        choices = {"embed_dim": tuple(embed_dims), "depth": tuple(depths)}
        for i in range(max(depths)):
            choices[f"num_heads_{i}"] = tuple(num_heads)
            choices[f"mlp_ratio_{i}"] = tuple(mlp_ratios)
        super().__init__(choices, embed_dims=tuple(embed_dims), depths=tuple(depths),
                         num_heads=tuple(num_heads), mlp_ratios=tuple(mlp_ratios),
                         head_dim=head_dim, patch_size=patch_size, **kw)

    def _canonical(self, arch):
        """Heads and MLP ratio of layers beyond the depth set to their first option."""
        unused = [f"{kind}_{i}" for i in range(arch["depth"], max(self.config["depths"]))
                  for kind in ("num_heads", "mlp_ratio")]
        return self._first_options(arch, unused)

    def _distinct_structures(self, limit):
        c = self.choices
        return len(c["embed_dim"]) * sum(
            math.prod(len(c[f"num_heads_{i}"]) * len(c[f"mlp_ratio_{i}"]) for i in range(d))
            for d in c["depth"])

    def _check_shape(self):
        p = self.config["patch_size"]
        if len(self.input_shape) != 3 or self.input_shape[0] % p or self.input_shape[1] % p:
            raise ValueError(f"vit takes images [height, width, channels] with height and width "
                             f"divisible by patch_size={p}, got {self.input_shape}")

    def _costs(self, arch):
        height, width, channels = self.input_shape
        p, hd, e = self.config["patch_size"], self.config["head_dim"], arch["embed_dim"]
        tokens = (height // p) * (width // p)
        params = p * p * channels * e + e + tokens * e + 2 * e + e * self.num_classes + self.num_classes
        macs = tokens * p * p * channels * e + e * self.num_classes
        for i in range(arch["depth"]):
            heads, hidden = arch[f"num_heads_{i}"], mlp_width(e, arch[f"mlp_ratio_{i}"])
            inner = heads * hd
            params += 4 * e + (e + 1) * 3 * inner + inner * e + e + (e + 1) * hidden + hidden * e + e
            macs += tokens * (3 * e * inner + inner * e + 2 * e * hidden) + 2 * tokens * tokens * inner
        return params, macs


register("vit", ViTSpace)
