"""fastnn.keras: Keras's names and conventions over fastnn's own layers, trainer and kernels.

    import fastnn.keras as keras
    from fastnn.keras import layers
    model = keras.Sequential([keras.Input(shape=(784,)),
                              layers.Dense(512, activation="relu"),
                              layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])

A thin facade, not a second implementation: every layer it builds is a fastnn layer (a fix in
the core fixes both), trained by fastnn.Trainer on fastnn's CPU or CUDA kernels. What it does
is translate: Keras's argument names and defaults, lazy input sizes, channels-last images
(converted once, at the model's input), softmax + cross-entropy trained through fastnn's fused
loss, evaluate's [loss, accuracy]. Sequential models only (no functional API).
"""
from fastnn.keras import callbacks, datasets, layers, losses, models, optimizers, utils
from fastnn.keras.layers import Input
from fastnn.keras.models import Sequential

__all__ = ["Input", "Sequential", "callbacks", "datasets", "layers", "losses", "models",
           "optimizers", "utils"]
