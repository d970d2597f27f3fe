"""Every kind of calframe output passes fitsverify with 0 errors and 0 warnings.

fitsverify is the Debian/Ubuntu package ``fitsverify`` (NASA HEASARC's checker
built on CFITSIO); these tests skip when it is not installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calframe import read_frame, write_frame
from calframe.provenance import InputRecord, Provenance, set_provenance

FITSVERIFY = shutil.which("fitsverify")
pytestmark = pytest.mark.skipif(
    FITSVERIFY is None, reason="fitsverify not installed (apt install fitsverify)")


def fitsverify(path) -> tuple[int, int, str]:
    """(warnings, errors, report) of fitsverify on one file."""
    result = subprocess.run([FITSVERIFY, str(path)], capture_output=True, text=True,
                            timeout=300, check=False)
    found = re.search(r"Verification found (\d+) warning\(s\) and (\d+) error\(s\)",
                      result.stdout)
    assert found, f"unexpected fitsverify output:\n{result.stdout}\n{result.stderr}"
    return int(found[1]), int(found[2]), result.stdout


def assert_clean(path) -> None:
    n_warn, n_err, report = fitsverify(path)
    assert (n_warn, n_err) == (0, 0), report


def frame(shape=(16, 24), dtype=np.float32, *, seed=0, meta=None) -> CCDData:
    rng = np.random.default_rng(seed)
    return CCDData(rng.normal(100, 5, shape).astype(dtype), unit="adu",
                   uncertainty=StdDevUncertainty(np.full(shape, 5, dtype)),
                   mask=rng.random(shape) < 0.05, meta=meta or fits.Header())


def _mono():
    return frame()


def _float64():
    return frame(dtype=np.float64)


def _bare():
    ccd = frame()
    ccd.uncertainty = None
    ccd.mask = None
    return ccd


def _counts():
    ccd = frame()
    ccd.ncombine = np.full(ccd.shape, 7, np.int16)
    ccd.rejected = np.zeros(ccd.shape, np.int16)
    ccd.meta["NCOMBINE"] = 7
    return ccd


def _rgb():
    ccd = frame((3, 10, 12))
    ccd.ncombine = np.full(ccd.shape, 3, np.int16)
    return ccd


def _cfa():
    meta = fits.Header()
    for key, value in (("BAYERPAT", "RGGB"), ("XBAYROFF", 0), ("YBAYROFF", 1),
                       ("ROWORDER", "TOP-DOWN"), ("ISOSPEED", 800), ("EXPTIME", 30.0)):
        meta[key] = value
    return frame(meta=meta)


def _long_provenance():
    ccd = frame()
    prov = Provenance()
    for i in range(1000):
        prov.inputs.append(InputRecord(f"night/lights/light_{i:05d}_é.fits", f"{i:064x}",
                                       role="light", frametype="light",
                                       exptime=float(i), date_obs="2026-01-01T00:00:00",
                                       shape=(16, 24)))
    # About 60,000 characters of parameters: more than a FITS text cell can hold.
    prov.add_step("combine", frames=[r.path for r in prov.inputs], weights=[1.0] * 1000)
    for i in range(40):
        prov.add_step(f"step_{i}", value=i, text="x" * 300)
    set_provenance(ccd, prov)
    return ccd


def _dirty_header():
    meta = {"HIERARCH ESO DET CHIP": "x", "lowercase": 1, "EPOCH": 2000, "EQUINOX": "2000",
            "DATE-OBS": "2026-01-01 03:04:05", "DATE-END": "05/10/98", "DATEBAD": "today",
            "OBJECT": 42, "LONG": "y" * 200, "NAN": float("nan"), "OBJ": object(),
            "BLANK": -1, "BZERO": 32768, "TFORM1": "E", "PTYPE1": "U", "BLOCKED": True,
            "EXTEND": True, "DATAMAX": 65535, "COMMENT": ["é accentuated", "z" * 100]}
    return frame(meta=meta)


def _wcs():
    from astropy.wcs import WCS

    ccd = frame()
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [83.8, -5.4]
    wcs.wcs.crpix = [12.0, 8.0]
    wcs.wcs.cdelt = [-1e-4, 1e-4]
    ccd.wcs = wcs
    return ccd


def _normalised_flat():
    ccd = frame()
    return CCDData(ccd.data / np.float32(100), unit="", mask=ccd.mask,
                   uncertainty=StdDevUncertainty(ccd.uncertainty.array / np.float32(100)))


KINDS = {"mono": _mono, "float64": _float64, "no-uncertainty-no-mask": _bare,
         "with-counts": _counts, "rgb-cube": _rgb, "cfa": _cfa, "wcs": _wcs,
         "dimensionless": _normalised_flat, "long-provenance": _long_provenance,
         "dirty-header": _dirty_header}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_outputs_pass_fitsverify(tmp_path, kind):
    assert_clean(write_frame(KINDS[kind](), tmp_path / f"{kind}.fits"))


def test_fitsverify_detects_problems(tmp_path):
    """The check can fail: a header astropy accepts but the standard deprecates."""
    path = tmp_path / "bad.fits"
    hdu = fits.PrimaryHDU(np.zeros((4, 4), np.float32))
    hdu.header["EPOCH"] = "not a number"
    hdu.writeto(path)
    n_warn, n_err, _ = fitsverify(path)
    assert n_warn + n_err >= 1


def test_library_outputs_pass_fitsverify(tmp_path, monkeypatch):
    """Masters, a calibrated light and a demosaiced cube made by calframe."""
    from calframe import calibrate, make_master_bias, make_master_flat
    from calframe.demosaicing import demosaic

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(3)

    def raw(name, kind, level, exptime):
        header = fits.Header([("IMAGETYP", kind), ("EXPTIME", exptime), ("EGAIN", 1.5),
                              ("RDNOISE", 4.0), ("BAYERPAT", "RGGB"),
                              ("DATE-OBS", "2026-01-01T00:00:00")])
        fits.writeto(name, (level + rng.normal(0, 3, (16, 24))).astype(np.float32),
                     header)
        return name

    biases = [raw(f"b{i}.fits", "BIAS", 100, 0.0) for i in range(3)]
    flats = [raw(f"f{i}.fits", "FLAT", 9000, 1.0) for i in range(3)]
    light = raw("l.fits", "LIGHT", 600, 10.0)
    outputs = [write_frame(make_master_bias(biases), "master_bias.fits")]
    outputs.append(write_frame(make_master_flat(flats, bias="master_bias.fits"),
                               "master_flat.fits"))
    cal = calibrate(light, bias="master_bias.fits", flat="master_flat.fits")
    outputs.append(write_frame(cal, "light_cal.fits"))
    outputs.append(write_frame(demosaic(cal), "light_rgb.fits"))
    for path in outputs:
        assert_clean(path)
    # The synthetic raw frames that the demo writes are clean too.
    for path in sorted(tmp_path.glob("colour/**/*.fits"))[:4]:
        assert_clean(path)
    assert fits.getdata("light_rgb.fits").shape == (3, 16, 24)


REAL = ["ast325-st7/DarkBefore-001D120s.fit", "ast325-st7/Vega.fit",
        "saao-ste3/a8280271.fits", "esrf-misc/Pilatus1M.edf", "esrf-misc/medipix.edf",
        "esrf-id16b/ID16B_diatomee.edf", "camera-raw/Blackmagic.dng"]


@pytest.mark.realdata
@pytest.mark.parametrize("name", REAL)
def test_real_files_rewritten_pass_fitsverify(real_data, tmp_path, name):
    """Real instrument headers (MaxIm DL, IRAF, EDF, EXIF) come out FITS-clean."""
    with warnings.catch_warnings():
        # Frames without gain/read noise are read without an uncertainty, on purpose.
        from calframe.errors import UncertaintyUnknownWarning

        warnings.simplefilter("ignore", UncertaintyUnknownWarning)
        ccd = read_frame(real_data / name)
    path = write_frame(ccd, tmp_path / "out.fits")
    assert_clean(path)
    assert "EPOCH" not in fits.getheader(path)  # deprecated; EDF files carry one


@pytest.mark.slow
def test_command_outputs_pass_fitsverify(tmp_path, monkeypatch):
    """Masters, calibrated (and demosaiced) lights and a stack made by the commands,
    and the synthetic frames of the demo's nights."""
    from calframe.cli import main
    from calframe.datasets import SyntheticCamera, make_night

    monkeypatch.chdir(tmp_path)
    small = {"n_bias": 2, "n_dark": 2, "dark_exptimes": (60.0,), "n_flat": 2,
             "n_light": 2}
    make_night("mono", seed=1, camera=SyntheticCamera(shape=(32, 48)), **small)
    make_night("colour", seed=2, camera=SyntheticCamera(shape=(32, 48), cfa="RGGB"),
               **small)
    assert main(["-q", "run", "mono", "-o", "out-mono", "--no-report"]) == 0
    assert main(["-q", "run", "colour", "-o", "out-colour", "--demosaic", "bilinear",
                 "--no-report"]) == 0
    lights = sorted(str(p) for p in tmp_path.glob("out-mono/lights/*.fits"))
    # 32x48 frames hold too few stars to match: align by translation
    assert main(["-q", "stack", *lights, "-o", "stack.fits", "--align", "translation"]) == 0
    outputs = [*sorted(tmp_path.glob("out-*/**/*.fits")), tmp_path / "stack.fits"]
    assert len(outputs) >= 11
    cubes = [p for p in outputs if fits.getheader(p)["NAXIS"] == 3]
    assert cubes, "the colour night should give demosaiced cubes"
    for path in outputs:
        assert_clean(path)
    # The synthetic raw frames that the demo writes are clean too.
    for path in sorted(tmp_path.glob("colour/**/*.fits"))[:4]:
        assert_clean(path)


_key = st.text(alphabet="ABCXYZabc019_- .éH", min_size=1, max_size=12)
_value = st.one_of(
    st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.none(), st.text(max_size=120),
    st.text(alphabet="0123456789-/:T .Z", max_size=25),
    st.lists(st.integers(), max_size=3))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_key, _value, max_size=12))
def test_any_metadata_gives_a_clean_file(meta):
    """Whatever a frame's meta holds, the file written is FITS-clean."""
    with tempfile.TemporaryDirectory() as folder:
        ccd = frame((4, 5), meta=dict(meta))
        path = write_frame(ccd, os.path.join(folder, "m.fits"))
        with fits.open(path) as hdulist:
            hdulist.verify("exception")
            assert all(len(card.image) == 80 for card in hdulist[0].header.cards)
        assert_clean(path)
