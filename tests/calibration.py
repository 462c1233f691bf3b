"""A calibration check of predicted label probabilities, shared by the generator's and the collection's tests."""
import numpy as np


def assert_calibrated(probabilities: np.ndarray, labels: np.ndarray, bin_edges, what: str) -> None:
    """Per bin of predicted probability, the observed label rate matches the mean prediction.

    probabilities and labels are [rows, cells]. The tolerance is 4 standard errors
    plus 0.005; the standard error is clustered by row, because the labels of one
    session are correlated (an operation and its parts).
    """
    bin_of = np.digitize(probabilities, bin_edges[1:-1])
    for b in range(len(bin_edges) - 1):
        in_bin = bin_of == b
        cells = in_bin.sum()
        if cells < 200:
            continue
        residual_per_row = np.where(in_bin, labels - probabilities, 0.0).sum(axis=1)
        standard_error = np.sqrt(np.sum(residual_per_row**2)) / cells
        observed, predicted = labels[in_bin].mean(), probabilities[in_bin].mean()
        assert abs(observed - predicted) <= 4 * standard_error + 0.005, (
            f"{what}, bin [{bin_edges[b]:.4f}, {bin_edges[b + 1]:.4f}): observed rate {observed:.4f} "
            f"vs mean posterior {predicted:.4f} over {cells} cells (se {standard_error:.4f})"
        )
