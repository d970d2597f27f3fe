"""The synthetic generator: the truth it returns is what it wrote."""

import itertools

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from calframe.datasets import (
    CFA_PATTERNS,
    StarField,
    SyntheticCamera,
    bias_frame,
    cfa_colour_index,
    dark_frame,
    flat_frame,
    light_frame,
    make_night,
    render_stars,
)
from calframe.errors import OutputExistsError

SMALL = (128, 128)


def _sigma_bias(cam):
    """Per-pixel sigma of a bias in ADU: read noise plus rounding to integers."""
    return np.sqrt(cam.read_noise_adu**2 + 1.0 / 12.0)


# --------------------------------------------------------------- determinism
def test_same_seed_same_frames_and_different_seed_different():
    cam = SyntheticCamera(shape=(32, 48), cfa="BGGR")
    for factory in (lambda s: bias_frame(cam, seed=s), lambda s: dark_frame(cam, 30, seed=s),
                    lambda s: flat_frame(cam, seed=s), lambda s: light_frame(cam, seed=s)):
        a, b, c = factory(7), factory(7), factory(8)
        assert_array_equal(a.data, b.data)
        assert not np.array_equal(a.data, c.data)


def test_fixed_pattern_depends_only_on_pattern_seed():
    a = SyntheticCamera(shape=SMALL, pattern_seed=1)
    b = SyntheticCamera(shape=SMALL, pattern_seed=1)
    c = SyntheticCamera(shape=SMALL, pattern_seed=2)
    assert a == b
    assert_array_equal(a.bias_map(), b.bias_map())
    assert_array_equal(a.flat_map(), b.flat_map())
    assert_array_equal(a.hot_pixels, b.hot_pixels)
    assert not np.array_equal(a.bias_map(), c.bias_map())
    assert not np.array_equal(a.hot_pixels, c.hot_pixels)


def test_make_night_is_deterministic_byte_for_byte(tmp_path):
    cam = SyntheticCamera(shape=(24, 32), cfa="RGGB")
    kw = dict(seed=5, camera=cam, n_bias=2, n_dark=1, n_flat=2, n_light=2, dither=1.5)
    one = make_night(tmp_path / "a", **kw)
    two = make_night(tmp_path / "b", **kw)
    for fa, fb in zip(one.frames, two.frames, strict=True):
        assert fa.path.read_bytes() == fb.path.read_bytes()
    # more lights do not change the biases
    three = make_night(tmp_path / "c", **{**kw, "n_light": 4})
    for fa, fc in zip(one.files["bias"], three.files["bias"], strict=True):
        assert fa.read_bytes() == fc.read_bytes()


# ------------------------------------------------------------------- biases
def test_mean_of_biases_converges_to_bias_at_expected_rate():
    """The mean of N biases differs from the true bias by sigma/sqrt(N) per pixel."""
    cam = SyntheticCamera(shape=SMALL, read_noise=6.0, gain=1.3, bias_level=812.0)
    frames = np.stack([bias_frame(cam, seed=1000 + i).data for i in range(100)])
    sigma = _sigma_bias(cam)
    npix = frames[0].size
    for n in (4, 16, 100):
        resid = frames[:n].astype(np.float64).mean(axis=0) - cam.bias_map()
        expected = sigma / np.sqrt(n)
        # the std of npix residuals is known to ~1/sqrt(2 npix) = 0.6 %
        assert_allclose(resid.std(), expected, rtol=0.03)
        # the mean of all residuals is within 5 sigma of zero
        assert abs(resid.mean()) < 5 * expected / np.sqrt(npix)
        # pull distribution: about 4.55 % of pixels beyond 2 sigma
        beyond = np.mean(np.abs(resid) > 2 * expected)
        assert abs(beyond - 0.0455) < 0.006


def test_bias_level_per_cfa_position():
    cam = SyntheticCamera(shape=(64, 64), cfa="GBRG", bias_level=(500, 510, 520, 530),
                          bias_column_sigma=0.0, bias_row_sigma=0.0)
    bias = cam.bias_map()
    assert_array_equal(bias[0::2, 0::2], 500)
    assert_array_equal(bias[0::2, 1::2], 510)
    assert_array_equal(bias[1::2, 0::2], 520)
    assert_array_equal(bias[1::2, 1::2], 530)
    frame = bias_frame(cam, seed=3)
    for (dy, dx), level in zip([(0, 0), (0, 1), (1, 0), (1, 1)], (500, 510, 520, 530),
                               strict=True):
        assert abs(frame.data[dy::2, dx::2].mean() - level) < 5 * _sigma_bias(cam) / 32


def test_bias_structure_is_in_the_truth():
    cam = SyntheticCamera(shape=SMALL, bias_column_sigma=3.0, bias_row_sigma=1.0)
    bias = cam.bias_map()
    col_means = bias.mean(axis=0)
    assert_allclose(col_means.std(), 3.0, rtol=0.25)
    frames = np.stack([bias_frame(cam, seed=i).data for i in range(20)])
    # the measured column structure follows the true one
    measured = frames.mean(axis=(0, 1))
    assert np.corrcoef(measured, col_means)[0, 1] > 0.99


# -------------------------------------------------------------------- darks
def test_dark_current_slope_recovered():
    cam = SyntheticCamera(shape=SMALL, dark_current=0.5, n_hot_pixels=30,
                          hot_pixel_current=(10.0, 200.0))
    t1, t2, n = 30.0, 300.0, 20
    d1 = np.mean([dark_frame(cam, t1, seed=i).data for i in range(n)], axis=0)
    d2 = np.mean([dark_frame(cam, t2, seed=100 + i).data for i in range(n)], axis=0)
    slope = (d2 - d1) / (t2 - t1) * cam.gain   # e-/s, bias cancels
    true = cam.dark_current_map()
    # expected scatter of the slope estimate, per pixel (e-/s)
    var_adu = (true * (t1 + t2) / cam.gain**2 + 2 * _sigma_bias(cam) ** 2) / n
    err = np.sqrt(var_adu) * cam.gain / (t2 - t1)
    pull = (slope - true) / err
    assert abs(pull.mean()) < 5 / np.sqrt(pull.size)
    assert_allclose(pull.std(), 1.0, rtol=0.03)
    hot = cam.hot_pixels
    assert_allclose(slope[hot["y"], hot["x"]], hot["current"], rtol=0.05)
    assert_allclose(np.median(slope), np.median(true), atol=0.02)


def test_dark_current_doubles_with_temperature():
    cam = SyntheticCamera(shape=(16, 16), dark_doubling=6.0, temperature=-10.0)
    assert_allclose(cam.dark_current_map(-4.0), 2 * cam.dark_current_map())
    frame = dark_frame(cam, 10.0, temperature=2.0, seed=0)
    assert_allclose(frame.truth.dark_current, 4 * cam.dark_current_map())
    assert frame.header["CCD-TEMP"] == 2.0


# -------------------------------------------------------------------- flats
def test_flat_truth_is_what_was_injected():
    cam = SyntheticCamera(shape=SMALL, n_dust=4, vignetting=0.4)
    level, n = 20000.0, 16
    frames = [flat_frame(cam, level, exptime=2.0, seed=i) for i in range(n)]
    assert all(f.truth.flat is cam.flat_map() for f in frames)
    stack = np.mean([f.data for f in frames], axis=0)
    dark = cam.dark_current_map() * 2.0 / cam.gain
    measured = (stack - cam.bias_map() - dark) / level
    sigma = np.sqrt(cam.flat_map() * level / cam.gain + _sigma_bias(cam) ** 2) / level
    pull = (measured - cam.flat_map()) / (sigma / np.sqrt(n))
    assert abs(pull.mean()) < 5 / np.sqrt(pull.size)
    assert_allclose(pull.std(), 1.0, rtol=0.03)
    # the dust donuts are in the truth: a donut's ring is darker than its centre
    mote = cam.dust[0]
    cy, cx, r = int(mote["y"]), int(mote["x"]), mote["radius"]
    dust = cam.dust_map()
    assert dust[cy, cx] > 0.99
    assert dust[cy, int(cx + 0.7 * r)] < 1 - 0.8 * mote["depth"] * 0.9


def test_flat_normalised_has_unit_mean_per_colour():
    cam = SyntheticCamera(shape=(64, 64), cfa="RGGB")
    norm = cam.flat_map_normalised()
    colour = cam.colour_index()
    for c in range(3):
        assert_allclose(norm[colour == c].mean(), 1.0, rtol=1e-12)
    # normalising divides each colour by one number
    scale = cam.flat_map() / norm
    for c in range(3):
        assert_allclose(scale[colour == c], scale[colour == c][0], rtol=1e-12)
    assert scale[colour == 0][0] != scale[colour == 2][0]


# ---------------------------------------------------- noise = the truth sigma
@pytest.mark.parametrize("level", [200.0, 3000.0, 30000.0])
def test_flat_pixel_variance_equals_truth_sigma(level):
    cam = SyntheticCamera(shape=SMALL, cfa="GRBG")
    frame = flat_frame(cam, level, seed=int(level))
    pull = (frame.data - frame.truth.expected) / frame.truth.sigma
    assert abs(pull.mean()) < 5 / np.sqrt(pull.size)
    assert_allclose(pull.std(), 1.0, rtol=0.02)
    assert not frame.truth.saturated.any()


@pytest.mark.slow
def test_variance_follows_signal_over_many_realisations():
    """Photon transfer: for 40 frames, variance vs expected signal matches sigma^2."""
    cam = SyntheticCamera(shape=(64, 64), vignetting=0.6, n_dust=0, prnu=0.0)
    frames = np.stack([flat_frame(cam, 8000.0, seed=i).data for i in range(40)])
    truth = flat_frame(cam, 8000.0, seed=0).truth
    var = frames.astype(np.float64).var(axis=0, ddof=1)
    # bin pixels by expected signal; the mean variance in each bin matches sigma^2
    edges = np.quantile(truth.signal, np.linspace(0, 1, 9))
    for lo, hi in itertools.pairwise(edges):
        sel = (truth.signal >= lo) & (truth.signal <= hi)
        assert_allclose(var[sel].mean(), (truth.sigma[sel] ** 2).mean(), rtol=0.03)


def test_light_noise_cosmics_and_saturation():
    cam = SyntheticCamera(shape=SMALL, full_well=40000.0)
    field = StarField(n_stars=20, flux=(100.0, 50000.0))
    frame = light_frame(cam, 60.0, field=field, cosmic_rays=10, seed=4)
    t = frame.truth
    assert t.cosmic_mask.sum() >= 10
    assert t.saturated.any()
    good = ~t.cosmic_mask & ~t.saturated
    pull = (frame.data - t.expected) / t.sigma
    assert_allclose(pull[good].std(), 1.0, rtol=0.02)
    # cosmic rays stand far above the expectation, saturated pixels sit at the full well
    hit = t.cosmic_mask & ~t.saturated
    assert np.all(pull[hit] > 5)
    sat_adu = np.rint(cam.bias_map() + cam.full_well / cam.gain)
    assert np.all(np.abs(frame.data[t.saturated] - sat_adu[t.saturated]) < 8 * cam.read_noise_adu)
    ccd = frame.to_ccddata()
    assert ccd.unit == "adu"
    assert_array_equal(ccd.mask, t.saturated)
    assert_allclose(ccd.uncertainty.array, t.sigma, rtol=1e-6)


def test_light_stars_and_dither():
    cam = SyntheticCamera(shape=(64, 64), n_dust=0, vignetting=0.0, prnu=0.0)
    stars = np.array([(20.3, 30.7, 1000.0)], dtype=[("x", float), ("y", float),
                                                   ("flux", float)])
    field = StarField(sky=0.0)
    frame = light_frame(cam, 10.0, field=field, stars=stars, shift=(1.5, -2.0), seed=0)
    assert_allclose(frame.truth.stars["x"], 18.3)
    assert_allclose(frame.truth.stars["y"], 32.2)
    img = (frame.truth.signal - cam.dark_current_map() * 10.0)
    assert_allclose(img.sum(), 10000.0, rtol=1e-6)
    yy, xx = np.indices(img.shape)
    assert_allclose((img * xx).sum() / img.sum(), 18.3, atol=1e-3)
    assert_allclose((img * yy).sum() / img.sum(), 32.2, atol=1e-3)


def test_moffat_psf_conserves_flux_and_centre():
    stars = np.array([(31.2, 29.6, 5000.0)], dtype=[("x", float), ("y", float),
                                                   ("flux", float)])
    img = render_stars((64, 64), stars, StarField(psf="moffat", fwhm=3.0, beta=3.5))
    assert_allclose(img.sum(), 5000.0, rtol=2e-3)
    yy, xx = np.indices(img.shape)
    assert_allclose((img * xx).sum() / img.sum(), 31.2, atol=0.02)
    assert_allclose((img * yy).sum() / img.sum(), 29.6, atol=0.02)
    # FWHM along x through the peak row is 3 pixels within the sampling
    prof = render_stars((1, 201), np.array([(100.0, 0.0, 1.0)], dtype=stars.dtype),
                        StarField(psf="moffat", fwhm=30.0, beta=3.5))[0]
    above = np.flatnonzero(prof >= prof.max() / 2)
    assert abs((above[-1] - above[0] + 1) - 30) <= 2


# ------------------------------------------------------------------- Bayer
def test_cfa_colour_index_matches_pattern_letters():
    for pattern in CFA_PATTERNS:
        idx = cfa_colour_index(pattern, (4, 6))
        letters = np.array(list("RGB"))[idx]
        assert "".join(letters[:2, :2].ravel()) == pattern
        assert_array_equal(letters[2:4, 4:6], letters[:2, :2])


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_colour_vignetting_on_the_right_pixels(tmp_path, pattern):
    cam = SyntheticCamera(shape=(64, 64), cfa=pattern, vignetting=0.4,
                          vignetting_colour=(1.5, 1.0, 0.5), n_dust=0, prnu=0.0,
                          colour_response=(0.6, 1.0, 0.5))
    strength = {"R": 0.6, "G": 0.4, "B": 0.2}
    vig = cam.vignetting_map()
    # the four corners are equally far from the centre; each sits on a known CFA position
    for (y, x), k in zip([(0, 0), (0, -1), (-1, 0), (-1, -1)], range(4), strict=True):
        assert_allclose(vig[y, x], 1 - strength[pattern[k]], rtol=1e-12)
    # and the frames written to disk show it: corner/centre per colour
    night = make_night(tmp_path, seed=1, camera=cam, n_bias=4, n_dark=0, n_flat=8,
                       n_light=0, flat_level=30000.0)
    flats = np.mean([fits.getdata(p).astype(float) for p in night.files["flat"]], axis=0)
    biases = np.mean([fits.getdata(p).astype(float) for p in night.files["bias"]], axis=0)
    signal = flats - biases
    letters = np.array(list("RGB"))[cfa_colour_index(pattern, cam.shape)]
    centre = np.zeros(cam.shape, bool)
    centre[28:36, 28:36] = True
    corner = np.zeros(cam.shape, bool)
    corner[:4, :4] = corner[:4, -4:] = corner[-4:, :4] = corner[-4:, -4:] = True
    ratios = {}
    for colour in "RGB":
        sel = letters == colour
        measured = signal[corner & sel].mean() / signal[centre & sel].mean()
        true = cam.flat_map()[corner & sel].mean() / cam.flat_map()[centre & sel].mean()
        assert_allclose(measured, true, rtol=0.01)
        ratios[colour] = measured
    # red loses most light in the corners, blue least (vignetting_colour 1.5, 1.0, 0.5)
    assert ratios["R"] + 0.1 < ratios["G"] < ratios["B"] - 0.1


# -------------------------------------------------------------------- files
def test_night_files_read_back_with_astropy(tmp_path):
    cam = SyntheticCamera(shape=(40, 56), cfa="GBRG", temperature=-15.0,
                          instrument="Test Cam")
    night = make_night(tmp_path / "night", seed=2, camera=cam, n_bias=2, n_dark=2,
                       dark_exptimes=(10.0, 120.0), n_flat=2, n_darkflat=1, n_light=2)
    expected = {"bias": ("bias", "Bias Frame"), "dark": ("darks", "Dark Frame"),
                "flat": ("flats", "Flat Field"), "light": ("lights", "Light Frame"),
                "darkflat": ("darkflats", "DARKFLAT")}
    assert {k: len(v) for k, v in night.files.items()} == {
        "bias": 2, "dark": 4, "flat": 2, "darkflat": 1, "light": 2}
    assert night.dark_exptimes == [10.0, 120.0]
    for rec in night.frames:
        folder, imagetyp = expected[rec.frametype]
        assert rec.path.parent.name == folder
        with fits.open(rec.path) as hdul:
            hdr = hdul[0].header
            data = hdul[0].data
            assert hdr["BITPIX"] == 16 and hdr["BZERO"] == 32768
            assert data.dtype == np.uint16
            assert hdr["IMAGETYP"] == imagetyp
            assert hdr["EXPTIME"] == rec.exptime
            assert hdr["CCD-TEMP"] == -15.0
            assert hdr["EGAIN"] == cam.gain and hdr["RDNOISE"] == cam.read_noise
            assert hdr["BAYERPAT"] == "GBRG" and hdr["ROWORDER"] == "TOP-DOWN"
            assert hdr["XBAYROFF"] == 0 and hdr["YBAYROFF"] == 0
            assert hdr["INSTRUME"] == "Test Cam"
            assert hdr["DATE-OBS"] == rec.date_obs
            frame = night.frame(rec.path)
            assert_array_equal(data, frame.data)
        with fits.open(rec.path, do_not_scale_image_data=True) as raw:
            assert raw[0].data.dtype.kind == "i"
            assert_array_equal(raw[0].data.astype(np.int32) + 32768, frame.data)
    # DATE-OBS increases frame after frame
    dates = [rec.date_obs for rec in night.frames]
    assert dates == sorted(dates)
    assert night.files_of("dark", 120.0) == [night.path / "darks" / f"dark_120s_000{i}.fits"
                                             for i in (1, 2)]


def test_night_truth_and_layout(tmp_path):
    cam = SyntheticCamera(shape=(32, 32))
    night = make_night(tmp_path, seed=0, camera=cam, n_bias=1, n_dark=1, n_flat=1,
                       n_light=3, dither=2.0, layout={"light": "", "bias": "zero"},
                       imagetyp={"bias": "zero", "light": "object"})
    assert night.files["light"][0].parent == tmp_path
    assert fits.getheader(night.files["bias"][0])["IMAGETYP"] == "zero"
    assert fits.getheader(night.files["light"][0])["IMAGETYP"] == "object"
    assert_array_equal(night.truth.bias, cam.bias_map())
    assert_array_equal(night.truth.flat, cam.flat_map())
    assert night.truth.gain == cam.gain and night.truth.read_noise == cam.read_noise
    shifts = [f.shift for f in night.frames if f.frametype == "light"]
    assert shifts[0] == (0.0, 0.0) and shifts[1] != (0.0, 0.0)
    light = night.frame(night.files["light"][1])
    assert_allclose(light.truth.stars["x"], night.truth.stars["x"] + shifts[1][1])


def test_cosmic_rate_scales_with_exposure(tmp_path):
    cam = SyntheticCamera(shape=(100, 100))   # 0.01 Mpix
    night = make_night(tmp_path, seed=0, camera=cam, n_bias=3, n_dark=20,
                       dark_exptimes=(500.0,), n_flat=0, n_light=0, cosmic_rate=2.0)
    hits = [f.cosmic_rays for f in night.frames if f.frametype == "dark"]
    assert all(f.cosmic_rays == 0 for f in night.frames if f.frametype == "bias")
    assert abs(np.mean(hits) - 10.0) < 5 * np.sqrt(10.0 / 20)
    frame = night.frame(night.files["dark"][0])
    assert frame.truth.cosmic_mask.any() == (hits[0] > 0)


# ------------------------------------------------------------------- errors
def test_errors_name_the_parameter(tmp_path):
    with pytest.raises(ValueError, match="cfa='RGBG' is not a Bayer pattern"):
        SyntheticCamera(cfa="RGBG")
    with pytest.raises(ValueError, match=r"bias_level=.* must be one number or four"):
        SyntheticCamera(bias_level=(1, 2))
    with pytest.raises(ValueError, match=r"shape=.* must be"):
        SyntheticCamera(shape=(1, 10))
    with pytest.raises(ValueError, match="gain=0 must be positive"):
        SyntheticCamera(gain=0)
    with pytest.raises(ValueError, match=r"vignetting=1.2 .* must be below 1"):
        SyntheticCamera(vignetting=1.2)
    with pytest.raises(ValueError, match="read_noise=-1 must not be negative"):
        SyntheticCamera(read_noise=-1)
    cam = SyntheticCamera(shape=(8, 8))
    with pytest.raises(ValueError, match="exptime=-1 must not be negative"):
        dark_frame(cam, -1)
    with pytest.raises(ValueError, match="frametype='flat' must be 'dark' or 'darkflat'"):
        dark_frame(cam, 1, frametype="flat")
    with pytest.raises(ValueError, match="cosmic_rays=-2 must not be negative"):
        bias_frame(cam, cosmic_rays=-2)
    with pytest.raises(ValueError, match="level=0 must be positive"):
        flat_frame(cam, 0)
    with pytest.raises(ValueError, match="psf='airy' is not a known profile"):
        StarField(psf="airy")
    with pytest.raises(ValueError, match="fwhm=0 must be positive"):
        StarField(fwhm=0)
    with pytest.raises(ValueError, match="beta=1 must be above 1"):
        StarField(psf="moffat", beta=1)
    with pytest.raises(ValueError, match="n_bias=-1 must be a whole number"):
        make_night(tmp_path, camera=cam, n_bias=-1)
    with pytest.raises(ValueError, match="exposure times must not be negative"):
        make_night(tmp_path, camera=cam, dark_exptimes=(-5,))
    with pytest.raises(ValueError, match="cosmic_rate=-1 must not be negative"):
        make_night(tmp_path, camera=cam, cosmic_rate=-1)
    night = make_night(tmp_path, camera=cam, n_bias=1, n_dark=0, n_flat=0, n_light=0)
    with pytest.raises(OutputExistsError, match=r"bias_0001.fits exists; .*overwrite=True"):
        make_night(tmp_path, camera=cam, n_bias=1, n_dark=0, n_flat=0, n_light=0)
    make_night(tmp_path, camera=cam, n_bias=1, n_dark=0, n_flat=0, n_light=0, overwrite=True)
    with pytest.raises(KeyError, match=r"nope.fits is not a file of the synthetic night"):
        night.frame(tmp_path / "nope.fits")


def test_night_headers_normalise_with_read_frame(tmp_path):
    """What make_night writes is what calframe.read_frame understands."""
    from calframe import read_frame

    for cfa in (None, *CFA_PATTERNS):
        cam = SyntheticCamera(shape=(16, 24), cfa=cfa, temperature=-5.0, gain=1.7,
                              read_noise=4.0)
        night = make_night(tmp_path / str(cfa), seed=1, camera=cam, n_bias=1, n_dark=1,
                           dark_exptimes=(45.0,), n_flat=1, n_darkflat=1, n_light=1)
        for rec in night.frames:
            ccd = read_frame(rec.path)
            assert ccd.meta["FRAMETYP"] == rec.frametype
            assert ccd.meta["FTSOURCE"] == "header"
            assert ccd.meta["EXPTIME"] == rec.exptime
            assert ccd.meta["CCD-TEMP"] == -5.0
            assert ccd.meta["EGAIN"] == 1.7 and ccd.meta["RDNOISE"] == 4.0
            assert ccd.meta.get("BAYERPAT") == cfa
            assert_array_equal(ccd.data, night.frame(rec.path).data)
            assert ccd.uncertainty is not None


@pytest.mark.parametrize("roworder", ["TOP-DOWN", "BOTTOM-UP"])
@pytest.mark.parametrize("ny", [6, 7])
def test_header_pattern_describes_the_array_pattern(roworder, ny):
    """BAYERPAT/XBAYROFF/YBAYROFF/ROWORDER as written describe ``cfa`` at array [0, 0],
    read by calframe.bayer with the MaxIm/NINA/Siril convention."""
    from calframe.bayer import effective_pattern

    for cfa in CFA_PATTERNS:
        for offset in [(0, 0), (1, 0), (0, 1), (1, 1)]:
            cam = SyntheticCamera(shape=(ny, 8), cfa=cfa, roworder=roworder,
                                  bayer_offset=offset)
            header = dict((key, value) for key, value, _ in cam.header_cards())
            header["NAXIS2"], header["NAXIS1"] = ny, 8
            assert header["ROWORDER"] == roworder
            assert (header["XBAYROFF"], header["YBAYROFF"]) == offset
            assert effective_pattern(header) == cfa


def test_bottom_up_night_reads_back_with_the_array_pattern(tmp_path):
    from calframe import read_frame
    from calframe.bayer import effective_pattern

    cam = SyntheticCamera(shape=(33, 40), cfa="GRBG", roworder="BOTTOM-UP",
                          bayer_offset=(1, 0))
    night = make_night(tmp_path, seed=0, camera=cam, n_bias=0, n_dark=0, n_flat=1,
                       n_light=0)
    ccd = read_frame(night.files["flat"][0])
    assert ccd.meta["ROWORDER"] == "BOTTOM-UP"
    assert effective_pattern(ccd) == "GRBG"
    # the pattern read from the header puts each colour's response where the truth has it
    letters = np.array(list("RGB"))[cfa_colour_index(effective_pattern(ccd), cam.shape)]
    signal = ccd.data - cam.bias_map()
    flat = cam.flat_map()
    for colour in "RB":
        measured = np.median(signal[letters == colour]) / np.median(signal[letters == "G"])
        true = np.median(flat[letters == colour]) / np.median(flat[letters == "G"])
        assert_allclose(measured, true, rtol=0.02)
        assert measured < 0.7


def test_temperatures_per_frame_type(tmp_path):
    cam = SyntheticCamera(shape=(16, 16), temperature=-10.0, dark_doubling=5.0)
    night = make_night(tmp_path, seed=0, camera=cam, n_bias=1, n_dark=1,
                       dark_exptimes=(100.0,), n_flat=0, n_light=1,
                       temperatures={"dark": -5.0})
    dark = night.frame(night.files["dark"][0])
    light = night.frame(night.files["light"][0])
    assert fits.getheader(night.files["dark"][0])["CCD-TEMP"] == -5.0
    assert fits.getheader(night.files["light"][0])["CCD-TEMP"] == -10.0
    assert_allclose(dark.truth.dark_current, 2 * cam.dark_current_map())
    assert_allclose(light.truth.dark_current, cam.dark_current_map())
    with pytest.raises(ValueError, match=r"temperatures has unknown frame types \['darks'\]"):
        make_night(tmp_path / "x", camera=cam, temperatures={"darks": 0.0})
    with pytest.raises(ValueError, match="roworder='UP' must be 'TOP-DOWN' or 'BOTTOM-UP'"):
        SyntheticCamera(roworder="UP")


@settings(max_examples=40, deadline=None)
@given(x=st.floats(20, 43), y=st.floats(20, 43), fwhm=st.floats(1.0, 5.0),
       flux=st.floats(1.0, 1e6))
def test_gaussian_star_flux_and_centroid_property(x, y, fwhm, flux):
    stars = np.array([(x, y, flux)], dtype=[("x", float), ("y", float), ("flux", float)])
    img = render_stars((64, 64), stars, StarField(fwhm=fwhm))
    assert_allclose(img.sum(), flux, rtol=1e-6)
    yy, xx = np.indices(img.shape)
    # an undersampled PSF has a pixel-phase centroid error (a few 0.01 px at FWHM 1)
    atol = 1e-4 if fwhm >= 2.0 else 0.03
    assert_allclose((img * xx).sum() / img.sum(), x, atol=atol)
    assert_allclose((img * yy).sum() / img.sum(), y, atol=atol)
    # second moment: sigma^2 of the Gaussian plus 1/12 from the pixel integration
    # (Sheppard's correction, exact enough once the PSF spans a few pixels)
    if fwhm >= 2.0:
        sigma2 = (fwhm / (2 * np.sqrt(2 * np.log(2)))) ** 2 + 1 / 12
        assert_allclose((img * (xx - x) ** 2).sum() / img.sum(), sigma2, rtol=1e-3)


@settings(max_examples=30, deadline=None)
@given(ny=st.integers(1, 9), nx=st.integers(1, 9), pattern=st.sampled_from(CFA_PATTERNS))
def test_cfa_colour_index_property(ny, nx, pattern):
    idx = cfa_colour_index(pattern, (ny, nx))
    assert idx.shape == (ny, nx)
    for y in range(ny):
        for x in range(nx):
            assert "RGB"[idx[y, x]] == pattern[2 * (y % 2) + x % 2]


def test_extra_header_cards(tmp_path):
    cam = SyntheticCamera(shape=(8, 8), cfa="RGGB",
                          extra_cards=(("GAIN", 120, "gain setting"), ("OFFSET", 30, "")))
    frame = bias_frame(cam, seed=0)
    assert frame.header["GAIN"] == 120 and frame.header["OFFSET"] == 30
    assert frame.header["EGAIN"] == cam.gain
    night = make_night(tmp_path, camera=cam, n_bias=1, n_dark=0, n_flat=0, n_light=0)
    assert fits.getheader(night.files["bias"][0])["GAIN"] == 120
