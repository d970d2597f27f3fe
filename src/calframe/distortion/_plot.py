"""Figure of a distortion fit."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_distortion"]


def plot_distortion(model, image=None, *, exaggerate: float | None = None, figure=None):
    """Detected spots, exaggerated residual vectors, and the dx/dy maps.

    Parameters
    ----------
    model : DistortionModel
        A fitted model.
    image : array-like, optional
        The grid image, shown under the spots.
    exaggerate : float, optional
        Scale of the residual arrows (default: a pitch for three times the rms).
    figure : matplotlib.figure.Figure, optional
        Figure to draw in (a new one if not given).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from calframe.datasets._grid import make_grid_image
    >>> from calframe.distortion import DistortionModel
    >>> img, _ = make_grid_image((128, 128), pitch=20, seed=0)
    >>> fig = plot_distortion(DistortionModel.fit(img), img)
    >>> len(fig.axes) >= 3
    True
    """
    import matplotlib.pyplot as plt

    fig = figure if figure is not None else plt.figure(figsize=(15, 4.8))
    axes = fig.subplots(1, 3)
    res = model.residuals
    x, y = np.asarray(res["x"]), np.asarray(res["y"])
    if image is not None:
        img = np.asarray(getattr(image, "data", image), float)
        lo, hi = np.nanpercentile(img, [1, 99])
        axes[0].imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="lower")
    used = np.asarray(res["used"], bool)
    scale = exaggerate or model.meta["pitch_px"] / max(3 * model.rms, 1e-6)
    axes[0].plot(x[used], y[used], "+", color="tab:green", ms=3, label="spots used")
    axes[0].plot(x[~used], y[~used], "x", color="tab:red", ms=4, label="rejected")
    axes[0].quiver(x, y, np.asarray(res["dx"]) * scale, np.asarray(res["dy"]) * scale,
                   angles="xy", scale_units="xy", scale=1, color="tab:orange", width=0.002)
    axes[0].set_title(f"spots and residuals (x{scale:.0f}), rms {model.rms:.3f} px")
    axes[0].legend(loc="upper right", fontsize=7)
    dx, dy = model.maps()
    valid = model.valid_mask_cached()
    for ax, m, name in ((axes[1], dx, "dx"), (axes[2], dy, "dy")):
        shown = np.where(valid, m, np.nan)
        im = ax.imshow(shown, origin="lower", cmap="coolwarm")
        ax.set_title(f"{name} (pixels, ideal = observed + d)")
        fig.colorbar(im, ax=ax, shrink=0.8)
    for ax in axes:
        ax.set_aspect("equal")
    return fig
