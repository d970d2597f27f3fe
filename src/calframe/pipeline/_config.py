"""The settings of a run: what the TOML file and the command line set."""

from __future__ import annotations

import dataclasses
import inspect
import os
import tomllib
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any

from .._collection import collection_paths
from ..combining import Rejection, SigmaClip, rejection_from_name
from ..combining._rejection import as_rejection
from ..errors import InvalidSettingsError
from ..inventory import Tolerances
from ._cluster import parse_scheduler

__all__ = ["CalibrationSettings", "MasterSettings", "PipelineConfig", "StackSettings",
           "load_config", "rejection_setting"]


_METHODS = ("median", "mean")
_DARK_SCALES = ("exposure", "optimize", "optimize-per-channel", "none")
_ALIGNS = ("stars", "translation", "none")


def rejection_setting(value, low: float | None = None, high: float | None = None, *,
                      section: str = "master") -> Rejection | None:
    """The rejection settings object a section of the configuration gives.

    Parameters
    ----------
    value : Rejection, str, dict, astropy.stats.SigmaClip or None
        A settings object, its :meth:`~calframe.combining.Rejection.to_dict`
        form, an astropy ``SigmaClip``, an algorithm's name or None.
    low, high : float, optional
        The limits that go with a name (``rejection = "sigma"``, ``low = 4``
        in a TOML file); default: the algorithm's own.
    section : str
        The section, for messages.

    Returns
    -------
    Rejection or None
        The settings object (None: no rejection).

    Raises
    ------
    InvalidSettingsError
        An unknown name or algorithm, settings it cannot take, or ``low`` /
        ``high`` given with anything but a name.

    Examples
    --------
    >>> rejection_setting("minmax", 1, 2)
    MinMaxClip(nlow=1, nhigh=2)
    >>> rejection_setting({"algorithm": "GESD", "significance": 0.01})
    GESD(outliers_fraction=0.3, significance=0.01)
    """
    if isinstance(value, str):
        return rejection_from_name(value, low, high)
    if low is not None or high is not None:
        raise InvalidSettingsError(
            f"{section}: low and high go with a rejection name (rejection = 'sigma'); with "
            f"rejection settings {value!r}, give the limits in them, e.g. "
            "{algorithm = 'SigmaClip', low = 4.0, high = 3.0}")
    if isinstance(value, Mapping):
        return Rejection.from_dict(value)
    return as_rejection(value)


def _rejection_dict(rejection: Rejection | None) -> dict[str, Any] | str:
    return "none" if rejection is None else rejection.to_dict()


#: how a run may normalise its master flats (MasterSettings.flat_normalize)
FLAT_NORMALIZATIONS = ("median", "mean", "exposure")


@dataclass
class MasterSettings:
    """How masters are combined.

    Parameters
    ----------
    method : {'median', 'mean'}
        Combine method.
    rejection : settings object, str, dict or None
        Rejection before combining: a settings object of
        :mod:`calframe.combine` (e.g. ``SigmaClip(low=4, high=3)``), its
        :meth:`~calframe.combining.Rejection.to_dict` form (what a TOML table
        gives, e.g. ``{"algorithm": "SigmaClip", "low": 4.0}``), an
        :class:`astropy.stats.SigmaClip`, an algorithm's name (Siril's, see
        :data:`calframe.combining.REJECTIONS`: 'none', 'sigma', 'mad',
        'winsorized', 'linear', 'percentile', 'minmax', 'generalized'), or
        None.  Kept as the settings object (None: no rejection).
    low, high : float, optional
        With a name only: its limits; default: the algorithm's own (3 and 3
        sigma, 5 and 2.5 for the linear fit, 0.2 and 0.1 of the median, 1
        and 1 values for minmax, 0.3 and 0.05 for the generalized ESD test).
    flat_normalize : {'median', 'mean', 'exposure'}
        How the master flats are normalised (``normalize`` of
        :func:`calframe.make_master_flat`): by their median or mean level
        (dimensionless flats), or by their exposure time (flats in adu/s).
        With 'exposure', each calibrated light is the exposure-normalised
        transmission ``((data - dark_d)/t_d) / ((flat - dark_f)/t_f)`` of a
        beamline or lab detector, light and flat at their own exposures, each
        with its own dark (see :func:`calframe.transmission`).

    Examples
    --------
    >>> MasterSettings(rejection="winsorized", low=4).rejection
    WinsorizedSigmaClip(low=4.0, high=3.0, maxiters=10, cutoff=1.5)
    >>> MasterSettings(method="mean", rejection=None).to_dict()
    {'method': 'mean', 'rejection': 'none', 'flat_normalize': 'median'}
    """

    method: str = "median"
    rejection: Rejection | None = field(default_factory=SigmaClip)
    low: InitVar[float | None] = None
    high: InitVar[float | None] = None
    flat_normalize: str = "median"

    def __post_init__(self, low: float | None, high: float | None) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"master method={self.method!r} is not known; use one of "
                             f"{', '.join(_METHODS)}")
        if self.flat_normalize not in FLAT_NORMALIZATIONS:
            raise ValueError(f"master flat_normalize={self.flat_normalize!r} is not known; use "
                             f"one of {', '.join(FLAT_NORMALIZATIONS)}")
        self.rejection = rejection_setting(self.rejection, low, high, section="master")

    def rejection_object(self) -> Rejection | None:
        """The rejection settings object (None for no rejection): :attr:`rejection`."""
        return self.rejection

    def to_dict(self) -> dict[str, Any]:
        """Plain form (TOML and JSON): the rejection as its ``to_dict``, or ``'none'``."""
        return {"method": self.method, "rejection": _rejection_dict(self.rejection),
                "flat_normalize": self.flat_normalize}


@dataclass
class CalibrationSettings:
    """How lights are calibrated.

    Parameters
    ----------
    gain : float, optional
        Gain in e-/ADU; when given, calibrated lights are in electrons, and
        it replaces the headers' EGAIN in the frames' noise model.
    read_noise : float, optional
        Read noise in e-; replaces the headers' RDNOISE in the noise model.
    dark_scale : {'exposure', 'optimize', 'optimize-per-channel', 'none'}
        How a master dark is scaled to a light.
    cosmetic : bool
        Correct hot and cold pixels found in the master dark and flat.
    demosaic : str, optional
        Demosaic CFA lights with this method (e.g. 'bilinear').
    distortion : str, optional
        A distortion model file (:meth:`calframe.DistortionModel.to_fits`)
        to correct every light with.
    subtract_black : bool, optional
        Subtract the camera black level (RAW frames) from flats and lights;
        default: where no bias and no dark that includes the bias remove it
        (see :mod:`calframe.blacklevel`).  False keeps it.
    assume_linear : bool
        Take flats and lights as linear: skip the refusal of data that look
        gamma-encoded (:mod:`calframe.linearity`); recorded in the provenance.
    split_rgb : bool
        Also write each calibrated colour light as three files,
        ``lights/<name>_R.fits``, ``_G``, ``_B`` (demosaiced first, with
        ``demosaic`` or bilinear), as Siril's ``split`` does.
    """

    gain: float | None = None
    read_noise: float | None = None
    dark_scale: str = "exposure"
    cosmetic: bool = False
    demosaic: str | None = None
    distortion: str | None = None
    subtract_black: bool | None = None
    split_rgb: bool = False
    assume_linear: bool = False

    def __post_init__(self) -> None:
        if self.dark_scale not in _DARK_SCALES:
            raise ValueError(f"dark_scale={self.dark_scale!r} is not known; use one of "
                             f"{', '.join(_DARK_SCALES)}")
        if self.gain is not None and not (self.gain > 0):
            raise ValueError(f"gain={self.gain!r} must be positive (e-/ADU)")
        if self.read_noise is not None and not (self.read_noise >= 0):
            raise ValueError(f"read_noise={self.read_noise!r} must not be negative (e-)")


@dataclass
class StackSettings:
    """Whether and how the calibrated lights of each group are aligned and stacked.

    One stack is made per light group of the inventory (lights that share
    exposure, filter, binning, shape, gain and temperature), into
    ``stacks/<group>.fits``, with :func:`calframe.stack`.

    Parameters
    ----------
    enabled : bool
        Make the stacks.
    align : {'stars', 'translation', 'none'}
        Alignment to the group's first light.
    method : {'mean', 'median'}
        Combine method.
    rejection : settings object, str, dict or None
        Rejection before combining, in any form :class:`MasterSettings` takes.
    low, high : float, optional
        With a name only: its limits (default: the algorithm's own, as for
        masters).
    order : {0, 1, 3}
        Interpolation order of the warp.
    """

    enabled: bool = False
    align: str = "stars"
    method: str = "mean"
    rejection: Rejection | None = field(default_factory=SigmaClip)
    low: InitVar[float | None] = None
    high: InitVar[float | None] = None
    order: int = 1

    def __post_init__(self, low: float | None, high: float | None) -> None:
        if self.align not in _ALIGNS:
            raise ValueError(f"stack align={self.align!r} is not known; use one of "
                             f"{', '.join(_ALIGNS)}")
        if self.order not in (0, 1, 3):
            raise ValueError(f"stack order={self.order!r} is not known; use 0, 1 or 3")
        if self.method not in _METHODS:
            raise ValueError(f"stack method={self.method!r} is not known; use one of "
                             f"{', '.join(_METHODS)}")
        self.rejection = rejection_setting(self.rejection, low, high, section="stack")

    def rejection_object(self) -> Rejection | None:
        """The rejection settings object (None for no rejection): :attr:`rejection`."""
        return self.rejection

    def to_dict(self) -> dict[str, Any]:
        """Plain form (TOML and JSON): the rejection as its ``to_dict``, or ``'none'``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["rejection"] = _rejection_dict(self.rejection)
        return out


@dataclass
class PipelineConfig:
    """Everything a run needs; what the TOML file and the command line set.

    Parameters
    ----------
    inputs : list of str, or ImageFileCollection
        Folders and files of frames (a collection gives its files' paths).
    output : str
        The output folder.
    master : MasterSettings
        How masters are combined.
    calibrate : CalibrationSettings
        How lights are calibrated.
    stack : StackSettings
        Whether and how the calibrated lights are stacked.
    tolerances : Tolerances
        Grouping and matching tolerances of the inventory.
    frame_types : dict of str to str
        ``{glob: type}`` for files whose headers do not say.
    memory_limit : str
        Memory the combine engine may use (``"1GiB"``...).
    strict : bool
        Stop at the first problem.
    allow_mixed : bool
        Make masters the input contract refuses.
    absolute_paths : bool
        Name inputs by absolute paths in the outputs.
    recursive : bool
        Walk sub-folders of the inputs.
    report : bool
        Write the HTML report.
    outlier_sigma : float
        Robust z-score above which a frame's statistics are flagged as standing
        out of its group.
    scheduler : str
        Where the masters, lights and stacks are made: ``'threads'`` (this
        process, the default), ``'processes:N'`` (a local Dask cluster of N
        worker processes, started and stopped by the run), or the address of
        a running ``dask scheduler`` (``tcp://host:8786``).  The outputs are
        the same wherever they were made.

    Examples
    --------
    >>> cfg = PipelineConfig.from_dict({"inputs": ["night"], "output": "out",
    ...                                 "master": {"method": "mean"}})
    >>> cfg.master.method, cfg.calibrate.dark_scale
    ('mean', 'exposure')
    """

    inputs: list[str] = field(default_factory=list)
    output: str = "calibrated"
    master: MasterSettings = field(default_factory=MasterSettings)
    calibrate: CalibrationSettings = field(default_factory=CalibrationSettings)
    stack: StackSettings = field(default_factory=StackSettings)
    tolerances: Tolerances = field(default_factory=Tolerances)
    frame_types: dict[str, str] = field(default_factory=dict)
    memory_limit: str = "1GiB"
    strict: bool = False
    allow_mixed: bool = False
    absolute_paths: bool = False
    recursive: bool = True
    report: bool = True
    outlier_sigma: float = 5.0
    scheduler: str = "threads"

    def __post_init__(self) -> None:  # inputs may be a ccdproc ImageFileCollection
        self.inputs = collection_paths(self.inputs, "PipelineConfig inputs")
        parse_scheduler(self.scheduler)  # InvalidSettingsError naming the accepted forms

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> PipelineConfig:
        """Build from a plain dictionary (e.g. parsed TOML); unknown keys are errors."""
        data = dict(data)
        sections = {"master": MasterSettings, "calibrate": CalibrationSettings,
                    "stack": StackSettings, "tolerances": Tolerances}
        kwargs: dict[str, Any] = {}
        top = {f.name for f in dataclasses.fields(cls)}
        for key, value in data.items():
            if key not in top:
                raise ValueError(f"{source}: unknown setting {key!r}; known settings are "
                                 f"{', '.join(sorted(top))}")
            if key in sections:
                if not isinstance(value, dict):
                    raise ValueError(f"{source}: [{key}] must be a table of settings")
                # the fields and the InitVars (a rejection name's low and high)
                known = set(inspect.signature(sections[key]).parameters)
                for sub in value:
                    if sub not in known:
                        raise ValueError(f"{source}: unknown setting {key}.{sub}; known "
                                         f"settings are {', '.join(sorted(known))}")
                try:
                    kwargs[key] = sections[key](**value)
                except InvalidSettingsError as err:
                    raise InvalidSettingsError(f"{source}: [{key}] {err}") from err
            elif key == "inputs":
                kwargs[key] = [str(v) for v in ([value] if isinstance(value, str)
                                                else value)]
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (JSON and TOML friendly); :meth:`from_dict` is its inverse."""
        out = dataclasses.asdict(self)
        out["master"] = self.master.to_dict()
        out["stack"] = self.stack.to_dict()
        return out

    def replace(self, **changes) -> PipelineConfig:
        """A copy with top-level settings or ``section__name`` settings changed."""
        top, nested = {}, {}
        for key, value in changes.items():
            if "__" in key:
                section, name = key.split("__", 1)
                nested.setdefault(section, {})[name] = value
            else:
                top[key] = value
        for section, values in nested.items():
            top[section] = dataclasses.replace(getattr(self, section), **values)
        return dataclasses.replace(self, **top)


def load_config(path: str | os.PathLike) -> PipelineConfig:
    """Read a TOML configuration file.

    Relative ``inputs``, ``output`` and ``calibrate.distortion`` paths are
    taken relative to the folder of the file.

    Parameters
    ----------
    path : str or path-like
        The TOML file.

    Returns
    -------
    PipelineConfig
        The configuration.

    Raises
    ------
    ValueError
        When the file is not valid TOML or has unknown settings.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML ({err}); fix the syntax") from err
    base = path.parent

    def rebase(p: str) -> str:
        return p if os.path.isabs(p) or str(base) in ("", ".") else str(base / p)

    if "inputs" in data:
        inputs = data["inputs"]
        data["inputs"] = [rebase(p) for p in ([inputs] if isinstance(inputs, str)
                                                else inputs)]
    if "output" in data:
        data["output"] = rebase(data["output"])
    if isinstance(data.get("calibrate"), dict) and data["calibrate"].get("distortion"):
        data["calibrate"]["distortion"] = rebase(data["calibrate"]["distortion"])
    return PipelineConfig.from_dict(data, source=str(path))
