"""The fused softmax + cross-entropy loss: logits (N, C), labels int64 (N,)."""
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
            # the GPU adds into totals atomically, in the logits' type; the host in float64
            dtypes = (logits.dtype,) if dev else _checks.FLOAT_DTYPES
            _checks.array(op, "totals", totals, 1, dtypes=dtypes, device=dev)
            _checks.same_shape(op, "totals", totals, (2,))
        return self._kernels.softmax_cross_entropy_forward(logits, labels, probs, totals,
                                                          grad_out)

    def softmax_cross_entropy_backward(self, probs, labels, out=None):
        """-> dlogits = (probs - onehot(labels)) / N."""
        op = "softmax_cross_entropy_backward"
        n, c = self._logits_and_labels(op, probs, labels)
        dx = _checks.out_array(op, out, (n, c), probs.dtype, empty=self.empty,
                               device=self.device_arrays)
        return self._kernels.softmax_cross_entropy_backward(probs, labels, dx)
