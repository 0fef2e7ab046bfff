"""Learning-rate schedules: step() once per epoch sets the optimizer's lr (a recorded training
step reads lr from device memory each step, so a schedule replays the same graph)."""
import math

from fastnn.optim.base import Optimizer, _check_hyper


class Schedule:
    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.epoch = 0

    def step(self):
        """Advance one epoch and set the optimizer's learning rate for the next one."""
        self.epoch += 1
        self.optimizer.lr = self.lr_at(self.epoch)
        return self.optimizer.lr

    def lr_at(self, epoch):
        raise NotImplementedError

    def state_dict(self):
        return {"epoch": self.epoch, "base_lr": self.base_lr}

    def load_state_dict(self, d):
        self.epoch, self.base_lr = int(d["epoch"]), float(d["base_lr"])
        self.optimizer.lr = self.lr_at(self.epoch)


class StepDecay(Schedule):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer)
        if not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"StepDecay: expected step_size as a positive int, got {step_size!r}")
        self.step_size = step_size
        self.gamma = _check_hyper("StepDecay", "gamma", gamma, low_open=True)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineDecay(Schedule):
    """lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * epoch / total_epochs)) / 2, then
    min_lr after total_epochs."""

    def __init__(self, optimizer, total_epochs, min_lr=0.0):
        super().__init__(optimizer)
        if not isinstance(total_epochs, int) or total_epochs < 1:
            raise ValueError(f"CosineDecay: expected total_epochs as a positive int, got "
                             f"{total_epochs!r}")
        self.total_epochs = total_epochs
        self.min_lr = _check_hyper("CosineDecay", "min_lr", min_lr)

    def lr_at(self, epoch):
        frac = min(epoch, self.total_epochs) / self.total_epochs
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * frac)) / 2
