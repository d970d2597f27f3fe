"""``calframe info`` prints what read_frame found."""

import numpy as np
from astropy.io import fits

from calframe.cli import main


def test_info_prints_type_exposure_sources_and_masks(tmp_path, capsys):
    data = np.full((4, 5), 1000, np.uint16)
    data[0, 0] = 65535
    path = tmp_path / "Darks" / "img_001.fits"
    path.parent.mkdir()
    fits.PrimaryHDU(data, header=fits.Header({"EXPOINUS": 2500000, "CCD-TEMP": -10.0})
                    ).writeto(path)
    assert main(["info", str(path), "--gain", "2", "--read-noise", "5"]) == 0
    out = capsys.readouterr().out
    assert "4 x 5 float32 [adu]" in out
    assert "dark (from folder)" in out
    assert "2.5 (from EXPOINUS)" in out
    assert "masked             1 (1 saturated)" in out
    assert "uncertainty        detector model" in out


def test_info_all_frames_and_errors(tmp_path, capsys):
    path = tmp_path / "two.fits"
    fits.HDUList([fits.PrimaryHDU(np.zeros((2, 2), np.float32)),
                  fits.ImageHDU(np.ones((3, 3), np.float32))]).writeto(path)
    assert main(["info", "--all-frames", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path} [0]: 2 x 2" in out and f"{path} [1]: 3 x 3" in out
    assert "none (gain or read noise unknown" in out
    bad = tmp_path / "notes.fits"
    bad.write_text("not fits")
    assert main(["info", str(bad)]) == 1
    assert "notes.fits: named as FITS but does not start with" in capsys.readouterr().err
