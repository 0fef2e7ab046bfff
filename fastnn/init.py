"""Weight initialisers and fastnn's random generator.

An initialiser is a function (shape, fan_in, rng) -> float64 array; a layer casts the result to its
dtype. fan_in is the number of inputs feeding one output: `in_features` for Dense, C*KH*KW for
a Conv2D. Every parametric layer takes init= as a name below or such a function.

- normal(std):     N(0, std^2); the course's first attempt (std=0.01), fine for shallow nets
- xavier_normal:   N(0, 1/fan_in), Xavier Glorot's scale as the course material defines it
                   (the fan_in-only variant, suited to sigmoid and tanh)
- xavier_uniform:  U(-a, a) with a = sqrt(3/fan_in): the same variance, uniform
- he_normal:       N(0, 2/fan_in), Kaiming He's scale for ReLU (the default of Dense and Conv2D)
- he_uniform:      U(-a, a) with a = sqrt(6/fan_in)
- glorot_uniform:  U(-a, a) with a = sqrt(6/(fan_in + fan_out)), Glorot & Bengio's own scale
                   (Keras's default); fan_out from the weight's layout: out_features of a
                   Dense W (in, out), F*KH*KW of a Conv2D W (F, C, KH, KW)
- glorot_normal:   N(0, 2/(fan_in + fan_out)) (not truncated, unlike Keras's)
- zeros, ones:     constants (biases, BatchNorm's beta and gamma)

Randomness: fastnn.seed(s) reseeds the generator every initialiser and dropout layer draws from
when no rng is given, so a seeded script builds the same model every time.
"""
import numpy as np

_generator = np.random.default_rng()


def seed(s):
    """Reseed fastnn's default random generator (weights, dropout masks, data shuffling)."""
    global _generator
    _generator = np.random.default_rng(s)


def default_rng():
    """The generator initialisers and layers draw from when none is given."""
    return _generator


def child_rng():
    """A new generator seeded from the default one: each stochastic layer owns one, so its
    stream does not depend on how other layers consume theirs."""
    return np.random.default_rng(_generator.integers(2**63))


def normal(std=0.01):
    """An initialiser drawing from N(0, std^2)."""
    if not std > 0:
        raise ValueError(f"init.normal: expected a positive std, got {std!r}")

    def init(shape, fan_in, rng):
        return rng.normal(0.0, std, size=shape)
    init.__name__ = f"normal({std})"
    return init


def xavier_normal(shape, fan_in, rng):
    # Xavier: std = sqrt(1 / fan_in)
    return rng.normal(0.0, np.sqrt(1.0 / fan_in), size=shape)


def xavier_uniform(shape, fan_in, rng):
    # U(-a, a) has variance a^2 / 3: a = sqrt(3 / fan_in) gives Xavier's 1 / fan_in
    a = np.sqrt(3.0 / fan_in)
    return rng.uniform(-a, a, size=shape)


def he_normal(shape, fan_in, rng):
    # He: std = sqrt(2 / fan_in), which keeps the activations' scale through ReLUs
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)


def he_uniform(shape, fan_in, rng):
    a = np.sqrt(6.0 / fan_in)
    return rng.uniform(-a, a, size=shape)


def _fan_out(shape):
    if len(shape) == 2:      # Dense W (in_features, out_features)
        return shape[1]
    if len(shape) == 4:      # Conv2D W (F, C, KH, KW): each input feeds F*KH*KW outputs
        return shape[0] * shape[2] * shape[3]
    raise ValueError(f"init glorot: expected a Dense (in, out) or Conv2D (F, C, KH, KW) "
                     f"weight shape, got {tuple(shape)}")


def glorot_uniform(shape, fan_in, rng):
    # U(-a, a) has variance a^2 / 3: a = sqrt(6 / (fan_in + fan_out)) gives 2 / (fan_in + fan_out)
    a = np.sqrt(6.0 / (fan_in + _fan_out(shape)))
    return rng.uniform(-a, a, size=shape)


def glorot_normal(shape, fan_in, rng):
    return rng.normal(0.0, np.sqrt(2.0 / (fan_in + _fan_out(shape))), size=shape)


def zeros(shape, fan_in, rng):
    return np.zeros(shape)


def ones(shape, fan_in, rng):
    return np.ones(shape)


_NAMED = {"normal": normal(), "xavier_normal": xavier_normal, "xavier_uniform": xavier_uniform,
          "he_normal": he_normal, "he_uniform": he_uniform, "glorot_uniform": glorot_uniform,
          "glorot_normal": glorot_normal, "zeros": zeros, "ones": ones}


def get(init):
    """An initialiser from a name in the list above, or a callable passed through."""
    if callable(init):
        return init
    if isinstance(init, str) and init in _NAMED:
        return _NAMED[init]
    raise ValueError(f"unknown init {init!r}: expected a callable or one of "
                     f"{', '.join(sorted(_NAMED))}")


def make(init, shape, fan_in, dtype, rng=None):
    """Draw a parameter of `shape` with initialiser `init` (name or callable), cast to dtype."""
    values = np.asarray(get(init)(tuple(shape), fan_in, rng or _generator))
    if values.shape != tuple(shape):
        raise ValueError(f"init {init!r} returned shape {values.shape}, expected {tuple(shape)}")
    return np.ascontiguousarray(values, dtype=dtype)
