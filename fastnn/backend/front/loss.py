"""The losses' fused kernels: softmax + cross-entropy (logits (N, C), labels int64 (N,)) and
the mean squared error's forward into device totals (predictions and targets (N, F))."""
import numpy as np

from fastnn import _checks

_LABELS = (np.dtype(np.int64),)


class LossOps:
    def _logits_and_labels(self, op, logits, labels):
        dev = self.device_arrays
        _checks.array(op, "logits", logits, 2, layout="2-D (N, classes)", device=dev)
        n, c = logits.shape
        _checks.array(op, "labels", labels, 1, dtypes=_LABELS, device=dev)
        _checks.same_shape(op, "labels", labels, (n,))
        if n and c < 1:
            raise ValueError(f"{op}: expected at least one class, got logits of shape "
                             f"{logits.shape}")
        return n, c

    def _totals(self, op, totals, dtype):
        """A loss's 2-element totals: the GPU adds into them atomically, in the predictions'
        type; the host in any float type."""
        dev = self.device_arrays
        _checks.array(op, "totals", totals, 1, dtypes=(dtype,) if dev else _checks.FLOAT_DTYPES,
                      device=dev)
        _checks.same_shape(op, "totals", totals, (2,))

    def softmax_cross_entropy_forward(self, logits, labels, probs_out=None, totals=None,
                                      grad_out=None):
        """-> (mean loss as a Python float, softmax probabilities (N, C)). With totals (a
        2-element array of this backend, logits' dtype): adds [the summed row losses, the
        count of rows whose first largest logit is the label's] to it in place and returns
        (None, probs): nothing is read back to the host (a trainer reads totals every few
        steps). grad_out: also writes the backward's dlogits there, in the same pass (bit for
        bit softmax_cross_entropy_backward's). Labels are checked to lie in [0, C) where
        that is free (on the host); a GPU trusts them (they are checked where made)."""
        op, dev = "softmax_cross_entropy_forward", self.device_arrays
        n, c = self._logits_and_labels(op, logits, labels)
        probs = _checks.out_array(op, probs_out, (n, c), logits.dtype, name="probs_out",
                                  empty=self.empty, device=dev)
        if grad_out is not None:
            _checks.out_array(op, grad_out, (n, c), logits.dtype, name="grad_out", device=dev)
            if grad_out is probs or grad_out is logits:
                raise ValueError(f"{op}: grad_out must be an array of its own, not the probs "
                                 "or the logits")
        if totals is not None:
            self._totals(op, totals, logits.dtype)
        return self._kernels.softmax_cross_entropy_forward(logits, labels, probs, totals,
                                                          grad_out)

    def mean_squared_error_forward(self, prediction, target, totals, diff_out=None,
                                   labels_1d=False):
        """-> diff = prediction - target (N, F), the backward's input, after adding to totals
        (a 2-element array of this backend, the prediction's dtype on a GPU, a float dtype
        on the host) [the batch's summed per-sample losses: sum(diff**2) / F, the count of
        rows whose first largest output is the target's first largest, or with labels_1d
        (targets given as an (N,) vector) equals the target's value]: what a training step
        sums on the device, reading nothing back (SoftmaxCrossEntropy's totals, for MSE)."""
        op, dev = "mean_squared_error_forward", self.device_arrays
        _checks.array(op, "prediction", prediction, 2, layout="2-D (N, outputs)", device=dev)
        n, f = prediction.shape
        _checks.array(op, "target", target, 2, dtypes=(prediction.dtype,), device=dev)
        _checks.same_shape(op, "target", target, (n, f))
        if n and f < 1:
            raise ValueError(f"{op}: expected at least one output per row, got predictions "
                             f"of shape {prediction.shape}")
        if labels_1d and f != 1:
            raise ValueError(f"{op}: labels_1d takes one output per row (targets given as "
                             f"an (N,) vector), got predictions of shape {prediction.shape}")
        self._totals(op, totals, prediction.dtype)
        diff = _checks.out_array(op, diff_out, (n, f), prediction.dtype, name="diff_out",
                                 empty=self.empty, device=dev)
        if diff is target:
            raise ValueError(f"{op}: diff_out must not be the target (each row's target is "
                             "read after its difference is written)")
        return self._kernels.mean_squared_error_forward(prediction, target, totals, diff,
                                                        bool(labels_1d))

    def softmax_cross_entropy_backward(self, probs, labels, out=None):
        """-> dlogits = (probs - onehot(labels)) / N."""
        op = "softmax_cross_entropy_backward"
        n, c = self._logits_and_labels(op, probs, labels)
        dx = _checks.out_array(op, out, (n, c), probs.dtype, empty=self.empty,
                               device=self.device_arrays)
        return self._kernels.softmax_cross_entropy_backward(probs, labels, dx)
