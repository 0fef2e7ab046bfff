"""The course deck's Keras script on fastnn.keras, unchanged but for its imports; the data are
prepared as in Keras's mnist_mlp example. About 98% test accuracy after 5 epochs.

    python examples/keras_mnist_mlp.py        (MNIST from $FASTNN_DATA or ~/.cache/fastnn)
    FASTNN_DEVICE=cuda python examples/keras_mnist_mlp.py
"""
import time

import fastnn.keras as keras
from fastnn.keras.datasets import mnist
from fastnn.keras.models import Sequential
from fastnn.keras.layers import Dense, Dropout
from fastnn.keras.optimizers import Adam

num_classes = 10
(x_train, y_train), (x_test, y_test) = mnist.load_data()
x_train = x_train.reshape(60000, 784).astype("float32") / 255
x_test = x_test.reshape(10000, 784).astype("float32") / 255
y_train = keras.utils.to_categorical(y_train, num_classes)
y_test = keras.utils.to_categorical(y_test, num_classes)
start = time.perf_counter()

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

print(f"{time.perf_counter() - start:.1f}s in all")
