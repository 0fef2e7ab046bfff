"""fastnn.keras: Keras scripts run as written (on a few thousand MNIST images), and the facade
against fastnn's own API: the same seed gives the same weights and the same losses."""
import contextlib
import io
import re

import numpy as np
import pytest

import fastnn
import fastnn.keras as keras
from fastnn import layers as core
from fastnn.keras import callbacks, layers, losses, optimizers

# The course deck's script, exactly as the issue gives it (data prepared as in Keras's
# mnist_mlp example, on the first TRAIN images).
COURSE_SCRIPT = """
import fastnn.keras as keras
from fastnn.keras.datasets import mnist
from fastnn.keras.models import Sequential
from fastnn.keras.layers import Dense, Dropout
from fastnn.keras.optimizers import Adam
model = Sequential()
model.add(Dense(512, activation='relu', input_shape=(784,)))
model.add(Dropout(0.2))
model.add(Dense(512, activation='relu'))
model.add(Dropout(0.2))
model.add(Dense(num_classes, activation='softmax'))
model.compile(loss='categorical_crossentropy',
              optimizer=Adam(lr=0.001, beta_1=0.9, beta_2=0.999),
              metrics=['accuracy'])
model.summary()
history = model.fit(x_train, y_train, batch_size=128, epochs=5,
                    verbose=1, validation_data=(x_test, y_test))
score = model.evaluate(x_test, y_test, verbose=0)
print('Test loss:', score[0]); print('Test accuracy:', score[1])
"""


@pytest.fixture(scope="module")
def mnist_data(mnist_root):
    from fastnn.keras.datasets import mnist
    return mnist.load_data(mnist_root / "mnist")


def _run(script, namespace):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(script, "<keras script>", "exec"), namespace)
    return out.getvalue()


def test_the_course_script_runs_unchanged(mnist_data):
    (x_train, y_train), (x_test, y_test) = mnist_data
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    num_classes, train, test = 10, 5000, 1000
    x_train = x_train[:train].reshape(train, 784).astype("float32") / 255
    x_test = x_test[:test].reshape(test, 784).astype("float32") / 255
    y_train = keras.utils.to_categorical(y_train[:train], num_classes)
    y_test = keras.utils.to_categorical(y_test[:test], num_classes)
    fastnn.seed(0)
    ns = dict(num_classes=num_classes, x_train=x_train, y_train=y_train, x_test=x_test,
              y_test=y_test)
    text = _run(COURSE_SCRIPT, ns)
    assert "Total params: 669,706" in text  # Keras's own count for this model
    assert len(re.findall(r"^Epoch \d/5 ", text, re.M)) == 5
    accuracy = float(re.search(r"Test accuracy: ([\d.]+)", text).group(1))
    history = ns["history"].history
    assert accuracy == pytest.approx(history["val_accuracy"][-1])
    assert accuracy > 0.9, text  # 5,000 images, 5 epochs
    assert history["loss"][-1] < history["loss"][0] < 1.0  # no softmax applied twice


def test_keras_s_channels_last_convnet_example(mnist_data):
    """Keras's mnist_convnet example, built the way it is written (channels last,
    keras.Input, optimizer="adam", validation_split=0.1), on 3,000 images for 2 epochs."""
    (x_train, y_train), (x_test, y_test) = mnist_data
    x_train = np.expand_dims(x_train[:3000].astype("float32") / 255, -1)
    x_test = np.expand_dims(x_test[:1000].astype("float32") / 255, -1)
    y_train = keras.utils.to_categorical(y_train[:3000], 10)
    y_test = keras.utils.to_categorical(y_test[:1000], 10)
    fastnn.seed(0)
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    for shape in ("(None, 26, 26, 32)", "(None, 13, 13, 32)", "(None, 11, 11, 64)",
                  "(None, 5, 5, 64)", "(None, 1600)", "(None, 10)"):
        assert shape in text
    assert "Total params: 34,826" in text  # as Keras counts it
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=128, epochs=2, validation_split=0.1,
                        verbose=0)
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert history.epoch == [0, 1]
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy > 0.8 and loss < 0.7, (loss, accuracy)  # 84.5% here (chance: 10%)
    # the layout is converted once, by the first fastnn layer; the rest run on NCHW
    assert isinstance(model.core[0], core.FromChannelsLast)
    assert sum(isinstance(layer, core.FromChannelsLast) for layer in model.core) == 1


def _blobs(n=400, seed=0, channels=2):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 1, (n, 6, 6, channels)).astype(np.float32)
    x[..., 0] += (y[:, None, None] - 1) * 1.5
    return x, y


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_the_facade_is_fastnn_same_seed_same_weights_and_losses(loss):
    x, y = _blobs()
    target = y if loss.startswith("sparse") else keras.utils.to_categorical(y, 3)
    fastnn.seed(0)
    model = keras.Sequential([
        keras.Input(shape=(6, 6, 2)),
        layers.Conv2D(4, 3, padding="same", activation="relu", kernel_initializer="he_normal"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(8, activation="relu"),
        layers.Dropout(0.25),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile(loss=loss, optimizer=optimizers.Adam(learning_rate=0.01), metrics=["accuracy"])
    history = model.fit(x, target, batch_size=32, epochs=2, validation_split=0.25, verbose=0)
    result = model.evaluate(x, target, verbose=0, return_dict=True)

    fastnn.seed(0)  # the same network in fastnn's own terms, on NCHW images
    ref = fastnn.Sequential([core.Conv2D(2, 4, 3, pad=1, init="he_normal"), core.ReLU(),
                             core.MaxPool2D(2), core.Flatten(),
                             core.Dense(36, 8, init="glorot_uniform"), core.ReLU(),
                             core.Dropout(0.25), core.Dense(8, 3, init="glorot_uniform")])
    ref.compile("cross_entropy", fastnn.optim.Adam(ref, lr=0.01, eps=1e-7))
    x_nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    ref_history = ref.fit(x_nchw, y, batch_size=32, epochs=2, validation_split=0.25, verbose=0)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert history.history[key] == ref_history.history[key], key
    got = [p for _, p, _ in model.core.named_parameters()]
    want = [p for _, p, _ in ref.named_parameters()]
    assert len(got) == len(want) == 6
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    assert result == ref.evaluate(x_nchw, y, batch_size=32)  # Keras evaluates by 32
    logits = ref.predict(x_nchw[:5])
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(model.predict(x[:5], verbose=0), e / e.sum(axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-7)


def test_layers_build_fastnn_layers_with_keras_defaults():
    fastnn.seed(0)
    model = keras.Sequential([
        layers.Conv2D(4, 3, padding="same", input_shape=(7, 7, 3)),        # 7 -> 7, pad 1
        layers.BatchNormalization(),
        layers.ReLU(negative_slope=0.1),
        layers.Conv2D(6, (3, 3), strides=2, padding="same", activation="tanh"),  # 7 -> 4
        layers.MaxPooling2D(2, padding="same"),                          # 4 -> 2
        layers.AveragePooling2D(2, strides=1),                           # 2 -> 1
        layers.Flatten(),
        layers.Dense(5, use_bias=False, kernel_initializer="he_uniform"),
        layers.Activation("sigmoid"),
        layers.Dense(3),
        layers.Softmax(),
    ])
    assert [layer.output_shape for layer in model.layers] == [
        (4, 7, 7), (4, 7, 7), (4, 7, 7), (6, 4, 4), (6, 2, 2), (6, 1, 1), (6,), (5,), (5,),
        (3,), (3,)]
    conv, bn, relu, conv2, pool, avg = (layer.core_layers for layer in model.layers[:6])
    assert conv[0].pad == (1, 1) and conv[0].params["W"].shape == (4, 3, 3, 3)
    assert conv2[0].stride == (2, 2) and conv2[0].pad == (1, 1)  # odd padding: see layers.py
    assert type(conv2[1]) is core.Tanh and conv2[1].name == "conv2d_1_tanh"
    assert bn[0].momentum == 0.99 and bn[0].eps == 0.001  # Keras's defaults
    assert type(relu[0]) is core.LeakyReLU and relu[0].alpha == 0.1
    assert pool[0].pad == (0, 0) and type(avg[0]) is core.AvgPool2D
    dense = model.layers[7].core_layers[0]
    assert list(dense.params) == ["W"] and dense.in_features == 6
    assert model.layers[8].core_layers[0].__class__ is core.Sigmoid
    # Keras's glorot_uniform by default: U(-a, a), a = sqrt(6 / (fan_in + fan_out))
    W = model.layers[9].core_layers[0].params["W"]
    assert np.abs(W).max() <= np.sqrt(6 / (5 + 3))
    lines = []
    model.summary(print_fn=lines.append)
    text = lines[0]
    assert "batch_normalization (BatchNormalization)" in text and "(None, 7, 7, 4)" in text
    assert "Non-trainable params: 8" in text  # BatchNorm's moving mean and variance
    assert model.count_params() == 112 + 16 + 222 + 30 + 18
    # padding="same" that fastnn cannot do is refused, not approximated
    with pytest.raises(ValueError, match="stride 1 and an even kernel"):
        keras.Sequential([keras.Input((6, 6, 1)), layers.Conv2D(2, 2, padding="same")])
    with pytest.raises(ValueError, match="average pooling would count"):
        keras.Sequential([keras.Input((7, 7, 1)), layers.AveragePooling2D(2, padding="same")])


def test_lazy_building_from_the_first_data_seen():
    x, y = _blobs(64)
    model = keras.Sequential()
    model.add(layers.Flatten())
    model.add(layers.Dense(3, activation="softmax"))
    with pytest.raises(ValueError, match="has not yet been built"):
        model.summary()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")  # before building
    assert model.core is None
    history = model.fit(x, y, epochs=1, verbose=0)
    assert model.layers[1].core_layers[0].in_features == 72  # from the data: 6 * 6 * 2
    assert list(history.history) == ["loss"]
    assert isinstance(model.evaluate(x, y, verbose=0), float)  # no metrics: the loss alone
    model.add(layers.Dense(2, activation="softmax"))  # the shape is known: built at once
    assert model.layers[2].core_layers[0].in_features == 3
    with pytest.raises(ValueError, match=r"expected input of shape \(None, 6, 6, 2\), got "
                                         r"\(5, 6, 6, 3\)"):
        model.predict(np.zeros((5, 6, 6, 3), np.float32))
    built = keras.Sequential([layers.Dense(4, input_shape=(3,))])
    built.build((None, 3))
    assert built.core is not None and built.layers[0].output_shape == (4,)


def test_fit_evaluate_predict_and_history_as_keras_returns_them():
    x, y = _blobs(200)
    fastnn.seed(1)
    model = keras.Sequential([keras.Input((6, 6, 2)), layers.Flatten(),
                              layers.Dense(3, activation="softmax")])
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    first = model.fit(x, y[:, None], epochs=2, batch_size=16, verbose=0,
                      validation_data=(x[:50], y[:50]))
    second = model.fit(x, y, epochs=1, verbose=0)
    assert first.epoch == [0, 1] and second.epoch == [0] and model.history is second
    assert first.params == {"epochs": 2, "verbose": 0, "batch_size": 16}
    assert len(first.history["val_accuracy"]) == 2 and "val_loss" not in second.history
    loss, accuracy = model.evaluate(x, y, verbose=0)
    assert model.evaluate(x, y, verbose=0, return_dict=True) == {"loss": loss,
                                                                 "accuracy": accuracy}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        model.evaluate(x, y)  # verbose by default, as Keras
    assert out.getvalue().startswith("200/200 samples  loss ")
    probs = model.predict(x, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(model(x), probs)
    assert accuracy == pytest.approx(np.mean(probs.argmax(axis=1) == y))


def test_callbacks_with_keras_s_epochs_and_defaults(tmp_path):
    x, y = _blobs(120)
    fastnn.seed(2)
    model = keras.Sequential([keras.Input((6, 6, 2)), layers.Flatten(),
                              layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    class Recorder(callbacks.Callback):
        def __init__(self):
            self.seen = []

        def on_epoch_end(self, epoch, logs=None):
            self.seen.append((epoch, sorted(logs)))
            if epoch == 2:
                self.model.stop_training = True
    rec = Recorder()
    best = str(tmp_path / "best-{epoch:02d}-{val_loss:.2f}.npz")
    saver = callbacks.ModelCheckpoint(best, save_best_only=True)
    weights = callbacks.ModelCheckpoint(str(tmp_path / "w.npz"), save_weights_only=True)
    history = model.fit(x, y, epochs=10, verbose=0, validation_split=0.25,
                        callbacks=[rec, saver, weights])
    assert rec.seen == [(e, ["accuracy", "loss", "val_accuracy", "val_loss"]) for e in range(3)]
    assert history.epoch == [0, 1, 2]
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert "w.npz" in saved and saved[0].startswith("best-01-")
    assert fastnn.load(tmp_path / "w.npz").optimizer is None  # the model alone
    assert fastnn.load(tmp_path / saver.core.last_saved[0]).optimizer is not None
    # EarlyStopping's Keras defaults: patience=0, no weights restored
    stop = callbacks.EarlyStopping(monitor="loss", mode="max", verbose=1)  # loss falls
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        history = model.fit(x, y, epochs=10, verbose=0, callbacks=[stop])
    assert history.epoch == [0, 1] and stop.stopped_epoch == 1
    assert out.getvalue() == "Epoch 2: early stopping\n"

    class PerBatch(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass
    with pytest.raises(TypeError, match="PerBatch defines on_train_batch_end"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[PerBatch()])
    # fastnn's own callbacks go in as they are
    log = fastnn.callbacks.HistoryLogger(tmp_path / "h.json")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[log])
    assert (tmp_path / "h.json").exists()


def test_optimizers_become_fastnn_optimizers_with_keras_defaults():
    fastnn.seed(0)
    cases = [
        (optimizers.SGD(), fastnn.optim.SGD, {"lr": 0.01}),
        (optimizers.SGD(0.1, momentum=0.9), fastnn.optim.Momentum, {"momentum": 0.9}),
        (optimizers.SGD(momentum=0.9, nesterov=True), fastnn.optim.Nesterov, {}),
        (optimizers.Adam(lr=0.002, beta_1=0.8), fastnn.optim.Adam,
         {"lr": 0.002, "beta1": 0.8, "beta2": 0.999, "eps": 1e-7, "weight_decay": 0.0}),
        (optimizers.Adam(weight_decay=0.1), fastnn.optim.AdamW, {"weight_decay": 0.1}),
        (optimizers.AdamW(), fastnn.optim.AdamW, {"lr": 0.001, "weight_decay": 0.004}),
        (optimizers.RMSprop(), fastnn.optim.RMSProp, {"lr": 0.001, "decay_rate": 0.9}),
        (optimizers.Adagrad(), fastnn.optim.AdaGrad,
         {"lr": 0.001, "initial_accumulator_value": 0.1}),
        ("adam", fastnn.optim.Adam, {"lr": 0.001}), ("sgd", fastnn.optim.SGD, {}),
        ("rmsprop", fastnn.optim.RMSProp, {}),
    ]
    for spec, cls, hyper in cases:
        model = keras.Sequential([keras.Input((4,)), layers.Dense(3, activation="softmax")])
        model.compile(optimizer=spec, loss="sparse_categorical_crossentropy")
        built = model.core.optimizer
        assert type(built) is cls, (spec, built)
        for name, value in hyper.items():
            assert getattr(built, name) == pytest.approx(value), (spec, name)
    model.optimizer.learning_rate = 0.05  # reaches the fastnn optimizer that trains
    assert model.core.optimizer.lr == 0.05 and model.optimizer.lr == 0.05
    with pytest.raises(TypeError, match="learning_rate or lr"):
        optimizers.Adam(0.1, lr=0.1)
    with pytest.raises(TypeError, match="unsupported arguments clipnorm"):
        optimizers.Adam(clipnorm=1.0)
    with pytest.raises(ValueError, match="unknown optimizer 'adamax'"):
        model.compile(optimizer="adamax", loss="mse")


def test_mistakes_get_clear_errors():
    x, y = _blobs(20)
    soft = keras.Sequential([keras.Input((6, 6, 2)), layers.Flatten(),
                             layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match="would apply softmax twice"):
        soft.compile(optimizer="adam",
                     loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    logits = keras.Sequential([keras.Input((6, 6, 2)), layers.Flatten(), layers.Dense(3)])
    with pytest.raises(ValueError, match="expects probabilities"):
        logits.compile(optimizer="adam", loss="categorical_crossentropy")
    logits.compile(optimizer="adam",
                   loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    logits.fit(x, y, verbose=0)  # logits with from_logits=True: fastnn's fused loss
    soft.compile(optimizer="adam", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match=r"expects one-hot targets of shape \(N, 3\), got "
                                         r"\(20,\); for class indices use"):
        soft.fit(x, y, verbose=0)
    soft.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        soft.fit(x, y + 1, verbose=0)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        soft.compile(optimizer="adam", loss="hinge")
    with pytest.raises(ValueError, match="unknown metrics"):
        soft.compile(optimizer="adam", loss="mse", metrics=["auc"])
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        layers.Dense(3, activation="gelu")
    with pytest.raises(ValueError, match="expected units as a positive int, got 0"):
        layers.Dense(0)
    with pytest.raises(ValueError, match="put a Flatten"):
        keras.Sequential([keras.Input((6, 6, 2)), layers.Dense(3)])
    with pytest.raises(ValueError, match="channels-last images"):
        keras.Sequential([keras.Input((36,)), layers.Conv2D(3, 3)])
    with pytest.raises(ValueError, match="data_format='channels_first'"):
        layers.Conv2D(3, 3, data_format="channels_first")
    with pytest.raises(ValueError, match="keras.Input must come first"):
        keras.Sequential([layers.Dense(3, input_shape=(4,)), keras.Input((4,))])
    with pytest.raises(ValueError, match="input_shape= belongs on the first layer"):
        keras.Sequential([layers.Dense(3, input_shape=(4,)), layers.Dense(2, input_shape=(3,))])
    with pytest.raises(TypeError, match="Sequential models only"):
        layers.Dense(3)(keras.Input((4,)))
    shared = layers.Dense(3)
    keras.Sequential([keras.Input((4,)), shared])
    with pytest.raises(ValueError, match="already in a model"):
        keras.Sequential([keras.Input((4,)), shared])
    with pytest.raises(RuntimeError, match="compile"):
        keras.Sequential([keras.Input((4,)), layers.Dense(2)]).fit(np.zeros((2, 4)), [0, 1])


def test_to_categorical_and_load_data(mnist_data):
    np.testing.assert_array_equal(keras.utils.to_categorical([2, 0, 1]), np.eye(3)[[2, 0, 1]])
    one_hot = keras.utils.to_categorical(np.array([[1], [3]]), num_classes=5)
    assert one_hot.shape == (2, 5) and one_hot.dtype == np.float32 and one_hot[1, 3] == 1
    with pytest.raises(ValueError, match="num_classes"):
        keras.utils.to_categorical([4], num_classes=3)
    (x_train, y_train), (x_test, y_test) = mnist_data
    assert (x_train.dtype, y_train.dtype, x_test.shape) == (np.uint8, np.uint8, (10000, 28, 28))
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # MNIST's first labels
    keras.utils.set_random_seed(3)
    a = keras.Sequential([keras.Input((4,)), layers.Dense(2)]).core[0].params["W"].copy()
    keras.utils.set_random_seed(3)
    b = keras.Sequential([keras.Input((4,)), layers.Dense(2)]).core[0].params["W"]
    np.testing.assert_array_equal(a, b)
