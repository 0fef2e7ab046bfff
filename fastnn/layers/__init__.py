"""The layers users build models from; each has forward(x) -> y and backward(dy) -> dx.

One file per family: dense (Dense, Flatten), conv (Conv2D), pool (MaxPool2D, AvgPool2D,
L2Pool2D), activation (ReLU, LeakyReLU, Sigmoid, Tanh, Step, Identity, Softmax, Maxout),
norm (BatchNorm), dropout (Dropout, DropConnect), layout (FromChannelsLast), container
(Residual; Sequential is in fastnn.sequential). The shared bookkeeping is in base, the Parameter
objects and their arena in parameter, the class registry and configs in registry.
"""
from fastnn.layers.activation import (Identity, LeakyReLU, Maxout, ReLU, Sigmoid, Softmax, Step,
                                      Tanh)
from fastnn.layers.base import Layer, Parameter
from fastnn.layers.container import Container, Residual
from fastnn.layers.conv import Conv2D
from fastnn.layers.dense import Dense, Flatten
from fastnn.layers.dropout import DropConnect, Dropout
from fastnn.layers.layout import FromChannelsLast
from fastnn.layers.norm import BatchNorm
from fastnn.layers.pool import AvgPool2D, L2Pool2D, MaxPool2D

__all__ = ["AvgPool2D", "BatchNorm", "Container", "Conv2D", "Dense", "DropConnect", "Dropout",
           "Flatten", "FromChannelsLast", "Identity", "L2Pool2D", "Layer", "LeakyReLU", "MaxPool2D", "Maxout",
           "Parameter", "ReLU", "Residual", "Sigmoid", "Softmax", "Step", "Tanh"]
