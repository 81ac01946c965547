"""Gradient-matching splits (GM-NAS): cut a supernet into sub-supernets where its
options disagree.

One supernet makes every option of a decision share the weights, even options
that pull those weights in opposite directions. For a decision d with options
o_1 … o_K, `option_distances` sets d to each one-hot option in turn (one
`vmap` over the K encodings; the other decisions at the mixing the supernet
trains with) and takes the loss gradient of the weights d's options share:
the elements every option uses. `option_support` finds them first — an element
is used by an option when its gradient is nonzero on any of the scoring batches,
and shared when every option uses it — so a ReLU that happens to be dead on one
batch does not drop an element. Weights only some options use (an op's own
kernel, the outer channels of a wider option) are d's own and left out; the
core of an entangled kernel that every option uses is shared and kept. The
distance of two options is 1 − cos(g_i, g_j) (or ‖g_i − g_j‖², `metric="l2"`);
the matrices of several batches are averaged by the caller.

`min_cut(D)` partitions the options into two groups minimising the distance
within groups, i.e. maximising the cut Σ_{i∈A, j∈B} D_ij, each group at least
`min_group(K)` options (2 from 4 options on, as the reference implementation
does: a lone outlier option would take a whole sub-supernet); exhaustive up to
`EXHAUSTIVE` options, beyond that a local search (`_local_cut`). The decision
with the largest cut is split (`choose`); each group becomes a sub-supernet, a
restricted space (`Space.restrict`) over the same weights.
`SplitTree` records every split: the sub-supernet split, the decision, every
candidate decision's matrix and cut, and the groups.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from search import engine

METRICS = ("cosine", "l2")
EXHAUSTIVE = 12  # options up to which min_cut tries every partition (2^(K-1) − 1 of them)


def allowed(space, sub_space) -> dict[str, np.ndarray]:
    """bool[K] per choice of `space`: the options `sub_space` (a restriction of it) keeps."""
    return {name: np.isin(np.arange(len(options)), [options.index(o) for o in sub_space.choices[name]])
            for name, options in space.choices.items()}


def _option_gradients(graphdef, name, params, rest, x, y, probs) -> jax.Array:
    """[K, P]: the flattened loss gradient with decision `name` at each one-hot option."""
    options = probs[name].shape[-1]

    def gradient_at(one_hot):
        def loss(p):
            logits, _ = engine.apply(graphdef, p, rest, x, {**probs, name: one_hot}, train=True)
            return engine.cross_entropy(logits, y)
        return jax.grad(loss)(params)

    grads = jax.vmap(gradient_at)(jnp.eye(options, dtype=jnp.float32))
    return jnp.concatenate([g.reshape(options, -1) for g in jax.tree.leaves(grads)], axis=1)


@functools.partial(jax.jit, static_argnums=(0, 1))
def option_support(graphdef, name: str, params, rest, x, y, probs) -> jax.Array:
    """bool[K, P]: the elements each option of `name` moves on this batch (OR them over
    batches, then AND over the options: the shared elements)."""
    return _option_gradients(graphdef, name, params, rest, x, y, probs) != 0


def distances(flat: jax.Array, metric: str = "cosine") -> jax.Array:
    """[K, K] distances between the rows of `flat`: 1 − cosine, or squared L2."""
    dots = flat @ flat.T
    norms2 = jnp.diag(dots)
    if metric == "l2":
        return jnp.maximum(norms2[:, None] + norms2[None, :] - 2 * dots, 0.0)
    if metric != "cosine":
        raise ValueError(f"unknown split distance {metric!r}; distances are {list(METRICS)}")
    norms = jnp.sqrt(norms2)
    cosine = dots / jnp.maximum(norms[:, None] * norms[None, :], 1e-30)
    return 1.0 - cosine


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def option_distances(graphdef, name: str, metric: str, params, rest, x, y, probs, shared) -> jax.Array:
    """[K, K] distances between the options of decision `name` on one batch over the
    `shared` elements (bool[P]): the model at `probs` with `name` set to each one-hot
    option (BatchNorm in train mode, as the supernet trains)."""
    flat = _option_gradients(graphdef, name, params, rest, x, y, probs)
    return distances(jnp.where(shared, flat, 0.0), metric)


def cut_value(distance: np.ndarray, group: np.ndarray) -> float:
    """Σ D_ij over i in `group` (bool[K]), j outside it."""
    group = np.asarray(group, bool)
    return float(distance[np.ix_(group, ~group)].sum())


def min_group(options: int) -> int:
    """The fewest options a group of a split may hold: 1 below 4 options, else 2."""
    return 1 if options < 4 else 2


def min_cut(distance, allowed: Callable[[np.ndarray], bool] | None = None) -> tuple[np.ndarray, float] | None:
    """(group, cut): the two-way partition of the options (bool[K], True = the group
    of option 0) with the least distance within groups, and its cut; each group holds
    at least `min_group(K)` options and, with `allowed`, `allowed(group)` holds (e.g.
    both halves keep an arch within the budget). None when no partition qualifies.
    Exhaustive up to `EXHAUSTIVE` options (ties: the first found, option 0's group
    growing in binary order); beyond, `_local_cut`."""
    d = np.asarray(distance, np.float64)
    k = d.shape[0]
    if d.shape != (k, k) or k < 2:
        raise ValueError(f"min_cut needs a square matrix of ≥ 2 options, got shape {d.shape}")
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0.0)
    smallest = min_group(k)
    if k > EXHAUSTIVE:
        group, cut = _local_cut(d, smallest)
        return (group, cut) if allowed is None or allowed(group) else None
    # Option 0 is always in the first group: each partition is listed once.
    codes = np.arange(2 ** (k - 1) - 1)
    others = ((codes[:, None] >> np.arange(k - 1)) & 1).astype(bool)  # which of 1..K-1 join group 0
    groups = np.concatenate([np.ones((len(codes), 1), bool), others], axis=1)
    sizes = groups.sum(1)
    groups = groups[(sizes >= smallest) & (k - sizes >= smallest)]
    g = groups.astype(np.float64)
    cuts = np.einsum("mi,ij,mj->m", g, d, 1 - g)
    for best in np.argsort(-cuts, kind="stable"):
        if allowed is None or allowed(groups[best]):
            return groups[best], float(cuts[best])
    return None


def _local_cut(d: np.ndarray, smallest: int) -> tuple[np.ndarray, float]:
    """Max-cut by local search: start from the signs of the eigenvector of D's least
    eigenvalue (the relaxation of min xᵀDx over x ∈ {±1}ᴷ, which is max cut), then
    move single options across while the cut grows and both groups keep `smallest`
    options. A local optimum: no single move improves it."""
    _, vectors = np.linalg.eigh(d)
    # Start from the sign pattern, balanced to at least `smallest` a side.
    order = np.argsort(vectors[:, 0])
    count = int(np.clip((vectors[:, 0] >= 0).sum(), smallest, len(d) - smallest))
    group = np.zeros(len(d), bool)
    group[order[len(d) - count:]] = True
    gains = True
    while gains:
        gains = False
        for i in range(len(d)):
            same, other = (group == group[i]), (group != group[i])
            # Moving i across turns its distances to its own side into cut, and back.
            gain = d[i, same].sum() - d[i, other].sum()
            if gain > 1e-12 and same.sum() > smallest:
                group[i] = not group[i]
                gains = True
    if not group[0]:
        group = ~group
    return group, cut_value(d, group)


@dataclasses.dataclass
class Candidate:
    """One decision's evidence at a split: the mean distance matrix and its min cut."""
    decision: str
    options: list
    matrix: list[list[float]]
    groups: list[list]
    cut: float


def candidate(decision: str, options: Sequence, matrix,
              allowed: Callable[[list, list], bool] | None = None) -> Candidate | None:
    """`decision`'s min cut of the mean distance `matrix` over its `options`, among the
    partitions `allowed(group_a, group_b)` accepts (lists of options); None if none is."""
    options = list(options)

    def accepts(group):
        return allowed([o for o, g in zip(options, group) if g], [o for o, g in zip(options, group) if not g])
    found = min_cut(matrix, None if allowed is None else accepts)
    if found is None:
        return None
    group, cut = found
    return Candidate(decision, options, np.asarray(matrix, float).round(6).tolist(),
                     [[o for o, g in zip(options, group) if g], [o for o, g in zip(options, group) if not g]],
                     cut)


def choose(candidates: Sequence[Candidate]) -> Candidate:
    """The decision with the largest cut (ties: the first listed)."""
    if not candidates:
        raise ValueError("no decision is left to split: every eligible decision has been split or "
                         "has a single option (check split.decisions and the number of splits)")
    return max(candidates, key=lambda c: c.cut)


@dataclasses.dataclass
class SplitTree:
    """Every sub-supernet as the restrictions that define it (choice → kept options),
    and every split made. `leaves` lists the live sub-supernets in training order;
    a round of splits puts each leaf's two children in its place."""
    leaves: list[dict] = dataclasses.field(default_factory=lambda: [{}])
    splits: list[dict] = dataclasses.field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.leaves)

    def space(self, space, leaf: int):
        """Leaf `leaf` as a restricted space."""
        for name, kept in self.leaves[leaf].items():
            space = space.restrict(name, kept)
        return space

    def eligible(self, space, leaf: int, decisions: Sequence[str] = ()) -> list[str]:
        """Decisions leaf `leaf` may split: in `decisions` (empty: all), not split on its
        path from the root, with ≥ 2 options."""
        sub = self.space(space, leaf)
        split = self.leaves[leaf]
        return [n for n in sub.names if (not decisions or n in decisions) and n not in split
                and len(sub.choices[n]) > 1]

    def split_round(self, picks: Sequence[tuple[Candidate, Sequence[Candidate]]], epoch: int) -> list[int]:
        """Split every leaf i in two along `picks[i] = (chosen, candidates)`; the children
        take their parent's place, in order. Returns each new leaf's parent index."""
        if len(picks) != self.size:
            raise ValueError(f"split_round needs one pick per leaf ({self.size}), got {len(picks)}")
        leaves, parents = [], []
        for i, (chosen, candidates) in enumerate(picks):
            parent = self.leaves[i]
            self.splits.append({"epoch": epoch, "leaf": i, "parent": dict(parent),
                                "decision": chosen.decision, "groups": chosen.groups, "cut": chosen.cut,
                                "candidates": [dataclasses.asdict(c) for c in candidates]})
            for group in chosen.groups:
                leaves.append({**parent, chosen.decision: list(group)})
                parents.append(i)
        self.leaves = leaves
        return parents

    def to_dict(self) -> dict:
        return {"leaves": self.leaves, "splits": self.splits}

    @classmethod
    def from_dict(cls, data: Mapping) -> "SplitTree":
        return cls([dict(leaf) for leaf in data["leaves"]], [dict(s) for s in data["splits"]])

    def describe(self) -> str:
        """The tree in text: each split with its cut, then the sub-supernets."""
        lines = []
        for s in self.splits:
            where = ", ".join(f"{k} ∈ {v}" for k, v in s["parent"].items()) or "the whole space"
            others = ", ".join(f"{c['decision']} {c['cut']:.3g}" for c in s["candidates"])
            lines.append(f"epoch {s['epoch']}: split {where} on {s['decision']} → {s['groups'][0]} | "
                         f"{s['groups'][1]} (cut {s['cut']:.3g}; cuts: {others})")
        for i, leaf in enumerate(self.leaves):
            lines.append(f"sub-supernet {i}: " + (", ".join(f"{k} ∈ {v}" for k, v in leaf.items())
                                                  or "the whole space"))
        return "\n".join(lines)
