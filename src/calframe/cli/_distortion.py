"""``calframe distortion``: fit a distortion model on a grid image, apply it to frames."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from . import cli


@cli.group("distortion")
def distortion() -> None:
    """Geometric distortion from an image of a grid target."""


@distortion.command("fit")
@click.argument("grid_image", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Model file to write (FITS).")
@click.option("--pyfai", "pyfai_path", type=click.Path(dir_okay=False), default=None,
              help="Also write a pyFAI NeXus detector file (.h5).")
@click.option("--polarity", type=click.Choice(["auto", "bright", "dark"]), default="auto",
              show_default=True, help="Bright holes on dark, or dark dots on bright.")
@click.option("--pitch", type=float, default=None,
              help="Approximate grid pitch in pixels (measured if not given).")
@click.option("--spot-radius", type=float, default=None, help="Spot radius in pixels.")
@click.option("--pitch-mm", type=float, default=None,
              help="True grid pitch in mm: sets the pixel size of the pyFAI detector.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Write a figure of the fit (PNG).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
def fit_cmd(grid_image, output, pyfai_path, polarity, pitch, spot_radius, pitch_mm,
            plot_path, overwrite) -> int:
    """Fit the distortion of GRID_IMAGE and write the model."""
    from ..distortion import DistortionModel, detect_grid_spots
    from ..io import read_frame
    from ..provenance import InputRecord, Provenance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a grid image needs no noise model
        ccd = read_frame(grid_image)
    spots = detect_grid_spots(ccd, polarity=polarity, spot_radius=spot_radius)
    model = DistortionModel.fit(spots, pitch=pitch, shape=ccd.shape)
    if not model:
        click.echo(f"error: {grid_image}: distortion fit failed: {model.reason}", err=True)
        return 1
    prov = Provenance()
    prov.add_input(InputRecord.from_file(grid_image, role="grid", shape=ccd.shape))
    model.meta["provenance"] = prov
    model.to_fits(output, overwrite=overwrite)
    m = model.meta
    click.echo(f"{grid_image}: {m['nspots']} spots, {m['nindexed']} indexed, "
               f"{m['nrejected']} rejected, rms {model.rms:.4f} px, pitch {m['pitch_px']:.3f} px")
    click.echo(f"wrote {output}")
    if pyfai_path:
        size = (1e-4, 1e-4)
        if pitch_mm:
            sx, sy = model.pixel_size(pitch_mm)
            size = (sx * 1e-3, sy * 1e-3)
        if Path(pyfai_path).exists() and overwrite:
            Path(pyfai_path).unlink()
        model.to_pyfai(pyfai_path, pixel_size=size)
        click.echo(f"wrote {pyfai_path}")
    if plot_path:
        import matplotlib

        matplotlib.use("Agg")
        from ..distortion import plot_distortion

        plot_distortion(model, ccd).savefig(plot_path, dpi=100)
        click.echo(f"wrote {plot_path}")
    return 0


@distortion.command("apply")
@click.option("--model", "model_path", required=True, type=click.Path(exists=True),
              help="Model file written by 'calframe distortion fit'.")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--outdir", required=True, type=click.Path(file_okay=False),
              help="Folder for the corrected frames.")
@click.option("--method", type=click.Choice(["flux-conserving", "interpolate"]),
              default="flux-conserving", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
def apply_cmd(model_path, files, outdir, method, overwrite) -> int:
    """Correct FILES for the distortion of MODEL and write them to OUTDIR."""
    from ..distortion import DistortionModel, correct_distortion
    from ..io import read_frame, write_frame

    model = DistortionModel.from_fits(model_path)
    for name in files:
        ccd = read_frame(name)
        out = correct_distortion(ccd, model, method=method)
        dest = Path(outdir) / (Path(name).stem + ".fits")
        write_frame(out, dest, overwrite=overwrite)
        click.echo(f"{name} -> {dest}")
    return 0
