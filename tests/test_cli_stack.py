"""``calframe stack`` end to end on files written to disk."""

import numpy as np
from astropy.io import fits
from numpy.testing import assert_allclose
from scipy import ndimage

from calframe import read_frame
from calframe.cli import main
from calframe.provenance import sha256_file


def test_stack_command_aligns_and_combines(tmp_path, capsys):
    rng = np.random.default_rng(3)
    scene = ndimage.gaussian_filter(rng.normal(size=(96, 96)), 3) * 400 + 1000
    paths = []
    for i, (dx, dy) in enumerate([(0, 0), (1.5, -2.0), (-2.5, 1.0)]):
        data = ndimage.shift(scene, (dy, dx), order=3, mode="nearest")
        # Noise as the header's detector model says: gain 1 e-/ADU, read noise 1 e-.
        data = rng.poisson(data) + rng.normal(0, 1.0, data.shape)
        path = tmp_path / f"light_{i}.fits"
        fits.PrimaryHDU(data.astype(np.float32),
                        header=fits.Header({"IMAGETYP": "Light Frame", "EXPTIME": 10.0,
                                            "EGAIN": 1.0, "RDNOISE": 1.0,
                                            "BUNIT": "adu"})).writeto(path)
        paths.append(str(path))
    before = [sha256_file(p) for p in paths]
    out = tmp_path / "stacked.fits"
    code = main(["-q", "stack", *paths, "-o", str(out), "--align", "translation",
                 "--reject", "none", "--order", "3"])
    assert code == 0, capsys.readouterr().err
    assert "stacked 3 frames" in capsys.readouterr().out
    result = read_frame(out)
    inner = (slice(8, -8), slice(8, -8))
    pull = (result.data[inner] - scene[inner]) / result.uncertainty.array[inner]
    assert abs(np.mean(pull)) < 0.05
    assert_allclose(np.std(pull), 1.0, atol=0.05)
    assert [sha256_file(p) for p in paths] == before
    # Refuses to overwrite, without a traceback.
    assert main(["stack", *paths, "-o", str(out), "--align", "translation"]) == 1
    assert "exists" in capsys.readouterr().err

