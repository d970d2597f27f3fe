"""``calframe distortion``: fit a distortion model on a grid image, apply it to frames."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from . import cli

_FIT_CHANNELS = ("luminance", "luma", "r", "g", "b")
_APPLY_CHANNELS = ("all", "luminance", "luma", "r", "g", "b")
# names that make -o a file (anything else is a folder, as in earlier versions)
_FITS_ENDINGS = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fits.fz")


@cli.group("distortion")
def distortion() -> None:
    """Geometric distortion from an image of a grid target.

    The grid may be of dots, holes or crossing lines.  A colour (RGB) image
    is reduced to one plane with --channel; a camera RAW (CFA) target is
    fitted on its green sites.
    """


def _read(path, *, grid=False):
    """Read a frame; a grid image needs no noise model, nor does a frame to resample."""
    from ..errors import UncertaintyUnknownWarning
    from ..io import read_frame

    with warnings.catch_warnings():
        if grid:
            warnings.simplefilter("ignore")
        else:
            warnings.simplefilter("ignore", UncertaintyUnknownWarning)
        return read_frame(path)


def _check_new(path, overwrite, what):
    from ..errors import OutputExistsError

    if path and Path(path).exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists; pass --overwrite to replace the {what}")


def _same_file(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:  # pragma: no cover - unresolvable paths are not the same file
        return False


def _plane_for_fit(ccd, grid_image, channel):
    """The grey image to detect spots in: the frame itself or the chosen colour plane."""
    from ..distortion._channel import _check, cfa_pattern, is_colour, select_channel
    from ..errors import InvalidSettingsError, UnsupportedFormatError

    channel = _check(channel)

    if is_colour(ccd.shape):
        return select_channel(ccd, channel or "luminance")
    if cfa_pattern(ccd) is not None:
        # a CFA mosaic (camera RAW): its green sites unless a colour is chosen
        return select_channel(ccd, channel or "g")
    if ccd.ndim != 2:
        raise UnsupportedFormatError(
            grid_image, f"holds an array of shape {ccd.shape}, not one grid image",
            "give a single grey or RGB image of the grid")
    if channel in ("r", "g", "b"):
        raise InvalidSettingsError(
            f"{grid_image}: --channel {channel} picks a colour plane, but the image is grey "
            "(one plane); leave --channel out")
    return ccd


@distortion.command("fit")
@click.argument("grid_image", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Model file to write (FITS).")
@click.option("--pyfai", "pyfai_path", type=click.Path(dir_okay=False), default=None,
              help="Also write a pyFAI NeXus detector file (.h5).")
@click.option("--polarity", type=click.Choice(["auto", "bright", "dark"]), default="auto",
              show_default=True,
              help="Bright holes on dark, or dark dots on bright; 'auto' tries the one the "
                   "histogram suggests, then the other if its spots do not form a lattice.")
@click.option("--channel", type=click.Choice(_FIT_CHANNELS, case_sensitive=False),
              default=None,
              help="Plane of a colour (RGB) image to fit: 'luminance' or 'luma' (the default "
                   "for a colour image: Rec. 709 weights 0.2126 R + 0.7152 G + 0.0722 B) or "
                   "one of R, G, B.  A camera RAW (CFA) target uses its green sites unless "
                   "R or B is chosen.  A grey image needs none.")
@click.option("--pitch", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Approximate grid pitch in pixels (measured if not given).")
@click.option("--spot-radius", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Spot radius in pixels.")
@click.option("--pitch-mm", type=click.FloatRange(min=0, min_open=True), default=None,
              help="True grid pitch in mm: sets the pixel size of the pyFAI detector.")
@click.option("--flexibility",
              type=click.Choice(["auto", "stiff", "default", "flexible", "very-flexible"]),
              default=None,
              help="Stiffness of the model.  'auto' chooses the radial order and knot "
                   "spacing by the error on held-out spots (for strong, wide-angle "
                   "distortion; slower, see --time-budget); the others are fixed levels, "
                   "from (radial order 3, knots every 3 pitches) to (7, 1).  The default "
                   "is (3, 2) unless --radial-order or --knot-spacing is given.")
@click.option("--radial-order", type=click.IntRange(1, 9), default=None,
              help="Number of radial terms of the global part (default 3).")
@click.option("--knot-spacing", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Knot spacing of the residual spline, in grid pitches (default 2; "
                   "smaller follows stronger local distortion).")
@click.option("--time-budget", type=click.FloatRange(min=0), default=None,
              help="Seconds for trying stiffness candidates with --flexibility auto "
                   "(default 30).")
@click.option("--full-maps", is_flag=True,
              help="Store full-size dx/dy images in the model file (the default stores the "
                   "model's parameters and a coarse preview: a few MB instead of ~100 MB "
                   "at 10 MP).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Write a figure of the fit (PNG).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
def fit_cmd(grid_image, output, pyfai_path, polarity, channel, pitch, spot_radius, pitch_mm,
            flexibility, radial_order, knot_spacing, time_budget, full_maps, plot_path,
            overwrite) -> int:
    """Fit the distortion of GRID_IMAGE and write the model.

    GRID_IMAGE is an image of a grid of dots or holes, or of crossing lines
    (FITS, TIFF, PNG, JPEG, camera RAW...); a grid of lines is fitted on its
    crossings.  When no grid is found, the error says how many candidate
    spots were found, fitted and indexed, and with which polarity.
    """
    from ..distortion import DistortionModel
    from ..errors import FrameReadError, InputOverwriteError
    from ..provenance import InputRecord, Provenance

    for out in (output, pyfai_path, plot_path):
        if out and _same_file(out, grid_image):
            raise InputOverwriteError(f"{out}: is the grid image; choose another output name")
    _check_new(output, overwrite, "model")
    _check_new(pyfai_path, overwrite, "pyFAI detector")
    settings = _settings(flexibility, radial_order, knot_spacing, time_budget)
    ccd = _read(grid_image, grid=True)
    plane = _plane_for_fit(ccd, grid_image, channel)
    model = DistortionModel.fit(plane, pitch=pitch, polarity=polarity, spot_radius=spot_radius,
                                settings=settings)
    if not model:
        raise FrameReadError(grid_image, f"no distortion fit: {model.reason}",
                             model.suggestion(cli=True))
    prov = Provenance()
    prov.add_input(InputRecord.from_file(grid_image, role="grid", shape=ccd.shape))
    model.meta["provenance"] = prov
    model.to_fits(output, overwrite=overwrite, maps=full_maps)
    m = model.meta
    used = f" ({plane.meta['CHANNEL']})" if "CHANNEL" in plane.meta else ""
    what = "line crossings" if model.spots.meta.get("target") == "lines" else "spots"
    click.echo(f"{grid_image}{used}: {m['nspots']} {what}, {m['nindexed']} indexed, "
               f"{m['nrejected']} rejected, rms {model.rms:.4f} px, pitch {m['pitch_px']:.3f} px")
    stiff = m.get("stiffness")
    if stiff and stiff.get("chosen"):
        scores = ", ".join(f"({c['radial_order']}, {c['knot_spacing']:g}) "
                           f"{c['holdout_rms']:.4f} px" for c in stiff["candidates"])
        click.echo(f"stiffness by {stiff['nheld']} held-out spots: {scores}; chose radial "
                   f"order {stiff['chosen'][0]}, knots every {stiff['chosen'][1]:g} pitches")
    click.echo(f"wrote {output}")
    if pyfai_path:
        _write_pyfai(model, pyfai_path, pitch_mm, overwrite)
        click.echo(f"wrote {pyfai_path}")
    if plot_path:
        import matplotlib

        matplotlib.use("Agg")
        from ..distortion import plot_distortion

        plot_distortion(model, plane).savefig(plot_path, dpi=100)
        click.echo(f"wrote {plot_path}")
    return 0


def _settings(flexibility, radial_order, knot_spacing, time_budget):
    """The FitSettings of the stiffness options (None: the defaults)."""
    from ..distortion import FitSettings

    if flexibility is None and radial_order is None and knot_spacing is None:
        if time_budget is not None:
            raise click.UsageError("--time-budget applies to --flexibility auto only")
        return None
    if flexibility == "auto" and (radial_order is not None or knot_spacing is not None):
        raise click.UsageError("--flexibility auto chooses --radial-order and --knot-spacing; "
                               "give either, not both")
    if flexibility not in (None, "auto") and time_budget is not None:
        raise click.UsageError("--time-budget applies to --flexibility auto only")
    extra = {} if time_budget is None else {"time_budget": time_budget}
    settings = FitSettings.flexibility(flexibility or "default", **extra)
    if radial_order is not None or knot_spacing is not None:
        from dataclasses import replace

        settings = replace(settings,
                           radial_order=settings.radial_order if radial_order is None
                           else radial_order,
                           knot_spacing=settings.knot_spacing if knot_spacing is None
                           else knot_spacing)
    return settings


def _write_pyfai(model, pyfai_path, pitch_mm, overwrite):
    from ..errors import UnsupportedFormatError

    try:
        import pyFAI  # noqa: F401
    except ImportError as err:
        raise UnsupportedFormatError(pyfai_path, "writing a pyFAI detector needs pyFAI",
                                     "install pyFAI, or leave out --pyfai") from err
    size = (1e-4, 1e-4)
    if pitch_mm:
        sx, sy = model.pixel_size(pitch_mm)
        size = (sx * 1e-3, sy * 1e-3)
    model.to_pyfai(pyfai_path, pixel_size=size, overwrite=overwrite)


def _is_file_name(path: str) -> bool:
    """True when ``-o`` names one output file rather than a folder."""
    p = Path(path)
    if p.is_dir() or path.endswith(("/", "\\")):
        return False
    return path.lower().endswith(_FITS_ENDINGS)


def _destinations(files, output, output_dir):
    """The output file of each input, by the rule given in the help of ``apply``."""
    if output and output_dir:
        raise click.UsageError("give -o/--output or -d/--output-dir, not both")
    if not output and not output_dir:
        raise click.UsageError("give -o/--output FILE (one input) or -d/--output-dir DIR")
    if output and _is_file_name(output):
        if len(files) > 1:
            raise click.UsageError(
                f"-o {output} names one file but {len(files)} frames were given; use "
                "-d/--output-dir DIR for several frames")
        return [Path(output)]
    folder = Path(output or output_dir)
    if folder.exists() and not folder.is_dir():
        raise click.UsageError(f"{folder} is a file, not a folder; -d/--output-dir takes a "
                               "folder")
    dests = [folder / (Path(name).stem + ".fits") for name in files]
    seen = {}
    for name, dest in zip(files, dests, strict=True):
        if dest in seen:
            raise click.UsageError(f"{seen[dest]} and {name} would both be written to {dest}; "
                                   "correct them in separate runs or rename one")
        seen[dest] = name
    return dests


@distortion.command("apply")
@click.option("--model", "model_path", required=True, type=click.Path(exists=True),
              help="Model file written by 'calframe distortion fit'.")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(),
              help="The corrected frame (FITS) when one frame is given.")
@click.option("-d", "--output-dir", "--outdir", "output_dir", type=click.Path(file_okay=False),
              help="Folder for the corrected frames (named after the inputs, .fits).")
@click.option("--channel", type=click.Choice(_APPLY_CHANNELS, case_sensitive=False),
              default="all", show_default=True,
              help="For colour (RGB) frames: correct every plane ('all', the same model for "
                   "each), or write only the luminance (Rec. 709) or one of R, G, B.  A CFA "
                   "mosaic (camera RAW) stays a mosaic with 'all', each colour resampled "
                   "from its own sites.")
@click.option("--method", type=click.Choice(["flux-conserving", "interpolate"]),
              default="flux-conserving", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
def apply_cmd(model_path, files, output, output_dir, channel, method, overwrite) -> int:
    """Correct FILES for the distortion of MODEL.

    Where the output goes: with one input, -o FILE.fits names the corrected
    frame; with several inputs, -d DIR (or --outdir DIR) is the folder, each
    output named after its input with a .fits ending.  For compatibility, -o
    naming a folder (an existing folder, or a name without a .fits/.fit/.fts
    ending) works as -d.

    The frames must have the shape of the grid image the model was fitted
    on; a colour frame of that shape is corrected plane by plane.
    """
    from ..distortion import DistortionModel, correct_distortion
    from ..distortion._channel import cfa_pattern, is_colour
    from ..errors import IncompatibleFramesError, InvalidSettingsError, UnsupportedFormatError
    from ..io import write_frame

    dests = _destinations(files, output, output_dir)
    if not overwrite:
        for dest in dests:
            _check_new(dest, overwrite, "corrected frame")
    model = DistortionModel.from_fits(model_path)
    ny, nx = model.shape
    for name, dest in zip(files, dests, strict=True):
        if _same_file(dest, name):
            raise InvalidSettingsError(f"{dest}: is the input frame {name}; write the "
                                       "corrected frame elsewhere")
        ccd = _read(name)
        if not (ccd.ndim == 2 or is_colour(ccd.shape)):
            raise UnsupportedFormatError(
                name, f"holds an array of shape {ccd.shape}, neither one image nor an RGB "
                "colour cube (3, ny, nx)", "give frames of one plane, or RGB images")
        if ccd.shape[-2:] != model.shape:
            kind = "colour " if is_colour(ccd.shape) else ""
            got = " x ".join(str(n) for n in ccd.shape[::-1][:2])
            raise IncompatibleFramesError(
                f"{name}: {kind}frame of {got} pixels (shape {ccd.shape}), but the model "
                f"{model_path} was fitted on a {nx} x {ny} image (shape {model.shape}); "
                "fit a model on a grid image taken with this detector at this size and "
                "binning ('calframe distortion fit')")
        channel = channel.lower()
        if channel == "luma":
            channel = "luminance"
        if (channel != "all" and not is_colour(ccd.shape) and channel != "luminance"
                and cfa_pattern(ccd) is None):
            raise InvalidSettingsError(
                f"{name}: --channel {channel} picks a colour plane, but the frame is grey; "
                "leave --channel out")
        out = correct_distortion(ccd, model, method=method,
                                 channel=None if channel == "all" else channel)
        write_frame(out, dest, overwrite=overwrite)
        click.echo(f"{name} -> {dest}")
    return 0


@distortion.command("check")
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False),
              default=None,
              help="Model file written by 'calframe distortion fit': IMAGE is corrected with "
                   "it before it is measured.  Without it IMAGE is measured as it is (a raw "
                   "grid image, or one already corrected).")
@click.option("--polarity", type=click.Choice(["auto", "bright", "dark"]), default="auto",
              show_default=True,
              help="Bright holes on dark, or dark dots on bright ('auto': as for 'fit').")
@click.option("--channel", type=click.Choice(_FIT_CHANNELS, case_sensitive=False),
              default=None,
              help="Plane of a colour (RGB) image to measure (as for 'fit'; luminance by "
                   "default).  A camera RAW (CFA) target uses its green sites unless R or B "
                   "is chosen.")
@click.option("--pitch", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Approximate grid pitch in pixels (measured if not given).")
@click.option("--spot-radius", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Spot radius in pixels.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write a residual map (PNG): each spot's offset from its row and column "
                   "lines, and their histogram.")
@click.option("--overwrite", is_flag=True, help="Replace an existing residual map.")
def check_cmd(image, model_path, polarity, channel, pitch, spot_radius, output,
              overwrite) -> int:
    """Measure how straight the rows and columns of spots of IMAGE are.

    The spots of the grid image IMAGE are detected and indexed on the
    lattice, a straight line is fitted to each row and each column of at
    least 4 spots (total least squares), and the perpendicular distances of
    the spots from their lines are summarised: number of lines and spots,
    mean, 99th percentile and maximum in pixels.  With --model, IMAGE is
    first corrected by the model (bilinear resampling), so that the numbers
    show what the correction leaves.  The measure needs no model, so a grid
    image corrected by any tool can be compared.
    """
    from ..distortion import DistortionModel
    from ..distortion._check import _failure_text, _measure
    from ..distortion._correct import correct_distortion
    from ..distortion._detect import _check_args
    from ..errors import FrameReadError, IncompatibleFramesError, InputOverwriteError

    if output and _same_file(output, image):
        raise InputOverwriteError(f"{output}: is the grid image; choose another output name")
    if output and model_path and _same_file(output, model_path):
        raise InputOverwriteError(f"{output}: is the model file; choose another output name")
    _check_new(output, overwrite, "residual map")
    model = DistortionModel.from_fits(model_path) if model_path else None
    ccd = _read(image, grid=True)
    plane = _plane_for_fit(ccd, image, channel)
    if model is not None:
        if plane.shape[-2:] != model.shape:
            ny, nx = model.shape
            got = " x ".join(str(n) for n in plane.shape[::-1][:2])
            raise IncompatibleFramesError(
                f"{image}: image of {got} pixels, but the model {model_path} was fitted on "
                f"a {nx} x {ny} image; check the image with a model fitted on a grid image "
                "of this detector at this size and binning")
        plane = correct_distortion(plane, model, method="interpolate")
    data, bad = _check_args(plane, polarity, spot_radius, None, None)
    result, info = _measure(data, bad, polarity, spot_radius, pitch)
    if result is None:
        what, _, fix = _failure_text(info, cli=True).rpartition("; ")
        raise FrameReadError(image, what, fix)
    used = f" ({plane.meta['CHANNEL']})" if "CHANNEL" in plane.meta else ""
    how = f"corrected by {model_path}" if model_path else "as it is"
    click.echo(f"{image}{used}, {how}: straightness of the rows and columns of spots")
    click.echo(result.summary())
    if output:
        _write_figure(result.plot(plane), output, overwrite)
        click.echo(f"wrote {output}")
    return 0


def _write_figure(fig, path, overwrite):
    """Write a PNG under a temporary name beside ``path``, then rename it over ``path``."""
    import os

    from .._atomic import temporary_path

    tmp = temporary_path(path)
    try:
        fig.savefig(tmp, format="png")
        _check_new(path, overwrite, "residual map")  # appeared meanwhile: keep it
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
