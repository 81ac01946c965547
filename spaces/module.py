"""Spaces derived from a supernet's own code (`nas.choices`): `register_model`.

    spaces.register_model("tiny", Tiny, input_shape=(8,), num_classes=3)

Registering runs nothing. Each space instance builds the model once, abstractly
(shapes only), with a recorder in place of the space: every
`space.choice(name, options, when=...)` the constructor makes becomes a choice
of the space, in call order. `options` may be any JSON scalars or arrays, or a
`range`. `when={other: values}` makes a conditional choice: it matters only
while choice `other` takes one of `values`; otherwise the canonical form sets
it to its first option, so the networks that differ only there are one network
(`Space.canonical`, `distinct_size`). Costs come from the compact model itself
(`Space._costs`), so a model needs no closed form. Model spaces take no
options (`space.options`): their sizes live in the module.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from nas.choices import Choice
from spaces.core import Space, _as_option


class _Recorder:
    """What a model's constructor sees while its choices are recorded: its name, config,
    default input shape and class count, and `choice`; nothing else of a space."""

    def __init__(self, name: str, config: dict, input_shape, num_classes):
        self.name, self.config = name, config
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        self.choices: dict[str, tuple] = {}
        self.conditions: dict[str, dict[str, tuple]] = {}

    def __getattr__(self, attribute):
        raise AttributeError(f"space.{attribute} is not available while the choices of space "
                             f"{self.__dict__.get('name')!r} are recorded: a constructor may read "
                             "space.name, .config, .input_shape, .num_classes and call space.choice")

    def choice(self, name: str, options, when: Mapping[str, Sequence] | None = None) -> Choice:
        if name in self.choices:
            raise ValueError(f"choice {name!r} is declared twice")
        options = tuple(_as_option(o) for o in options)
        conditions = {}
        for other, values in (when or {}).items():
            if other not in self.choices:
                raise ValueError(f"choice {name!r}: when= names {other!r}, which is not declared "
                                 "before it")
            if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, range)):
                raise ValueError(f"choice {name!r}: when={{{other!r}: {values!r}}} must list "
                                 f"options of {other!r}, e.g. [{self.choices[other][-1]!r}]")
            kept = tuple(_as_option(v) for v in values)
            unknown = [v for v in kept if v not in self.choices[other]]
            if not kept or unknown:
                raise ValueError(f"choice {name!r}: when={{{other!r}: {list(kept)}}} must be a "
                                 f"non-empty subset of its options {list(self.choices[other])}")
            conditions[other] = kept
        self.choices[name] = options
        if conditions:
            self.conditions[name] = conditions
        return Choice(name, options)


class ModuleSpace(Space):
    """A space whose choices are the `choice` calls of its supernet's constructor."""

    def __init__(self, **config):
        from flax import nnx
        recorder = _Recorder(self.name, config, self.default_input_shape, self.default_num_classes)
        try:
            nnx.eval_shape(lambda: self.supernet_class(recorder, rngs=nnx.Rngs(0)))
        except Exception as err:  # noqa: BLE001 - the user's constructor: say where it failed
            raise ValueError(f"recording the choices of {self.supernet_class.__name__} (space "
                             f"{self.name!r}): {type(err).__name__}: {err}") from err
        if not recorder.choices:
            raise ValueError(f"{self.supernet_class.__name__} declares no choice (space.choice)")
        self._conditions = recorder.conditions
        super().__init__(recorder.choices, **config)

    def choice(self, name: str, options, when: Mapping[str, Sequence] | None = None) -> Choice:
        """The `Choice` `name` with the options this space keeps (all of them in a supernet,
        the arch's one in a compact model)."""
        if name not in self._choices:
            raise ValueError(f"choice {name!r} was not declared when space {self.name!r} was "
                             f"recorded (choices: {list(self._choices)})")
        return Choice(name, self._choices[name])

    def _canonical(self, arch):
        """Each conditional choice whose condition fails, or that depends on an unused choice,
        at its first option (choices in declaration order: dependencies come first)."""
        out, used = dict(arch), {}
        for name in self._choices:
            used[name] = all(used.get(other, True) and arch[other] in values
                             for other, values in self._conditions.get(name, {}).items())
            if not used[name]:
                out[name] = self._choices[name][0]
        return out

    def _distinct_structures(self, limit: int) -> int:
        if not self._conditions:  # no conditional choice: every encoding is its own network
            return self.size()
        return super()._distinct_structures(limit)


def model_space(name: str, model_class, input_shape: Sequence[int], num_classes: int) -> type:
    """The `ModuleSpace` class of `model_class` (a `nas.Supernet` whose constructor declares
    its choices), with default input shape and class count."""
    return type(f"{model_class.__name__}Space", (ModuleSpace,), {
        "name": name, "supernet_class": model_class,
        "default_input_shape": tuple(input_shape), "default_num_classes": num_classes})
