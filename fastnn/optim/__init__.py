"""Optimizers and learning-rate schedules.

Build one on a model or on model.named_parameters(); step() applies one update to every trainable
parameter from its gradient, as one fused compiled pass per parameter (csrc/optim.pyx), or one
pass over them all when model.to() packed them into one flat array (a ParameterArena).
State (velocities, moments) is kept per parameter name.

    SGD:      p -= lr * g
    Momentum: v = momentum*v - lr*g;  p += v
    Nesterov: v = momentum*v - lr*g;  p += momentum*v - lr*g   (Bengio et al.'s form; PyTorch's
              nesterov=True gives the same iterates)
    AdaGrad:  h += g^2;  p -= lr * g / (sqrt(h) + eps)       (h starts at 0, or as given)
    RMSProp:  h = decay_rate*h + (1 - decay_rate)*g^2;  p -= lr * g / (sqrt(h) + eps)
    Adam:     m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;  t += 1
              p -= lr * mhat / (sqrt(vhat) + eps),  mhat = m/(1-b1^t),  vhat = v/(1-b2^t)
              weight_decay: g += weight_decay*p first (L2 in the gradient, as PyTorch's Adam)
    AdamW:    Adam, with p -= lr*weight_decay*p first (decoupled weight decay) instead

Gradients are read as the last backward left them (layers overwrite them). zero_grad() sets them
to zero, for code that accumulates by hand. On a GPU the update is recorded with the training
step and replayed (fastnn.backend.graphs): what changes every step, step_numbers(), is read from
device memory there (numbers_slot).
"""
from fastnn.optim.base import Optimizer, recordable
from fastnn.optim.rules import (SGD, AdaGrad, Adam, AdamW, Momentum, Nesterov, RMSProp,
                                from_state_dict, get)
from fastnn.optim.schedules import CosineDecay, Schedule, StepDecay

__all__ = ["AdaGrad", "Adam", "AdamW", "CosineDecay", "Momentum", "Nesterov", "Optimizer",
           "RMSProp", "SGD", "Schedule", "StepDecay", "from_state_dict", "get", "recordable"]
