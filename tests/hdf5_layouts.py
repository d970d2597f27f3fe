"""HDF5 files in the layouts beamline detectors write, made with h5py.

* :func:`write_eiger`: a DECTRIS Eiger master file ``<name>_master.h5`` whose
  ``/entry/data/data_000001``... are external links to data files of at most
  ``per_file`` frames, with ``/entry/instrument/detector`` (count_time,
  frame_time, detectorSpecific/pixel_mask, the count cut-off), uint32 frames
  and 0xFFFFFFFF in the gaps.
* :func:`write_lima`: LIMA's ``/entry_0000/instrument/<det>/data`` with
  ``acquisition/exposure_time`` and ``/entry_0000/measurement/data``.
* :func:`write_bliss`: a BLISS scan ``/1.1`` with ``instrument/<det>``
  (``acq_parameters/acq_expo_time``) and ``measurement/<det>`` as a link.
* :func:`write_nexus_default`: a NeXus file with the ``default`` chain to an
  NXdata ``signal``.

Each takes the frames and a ``compression`` ('bslz4', 'gzip' or None).
"""

from __future__ import annotations

import h5py
import hdf5plugin
import numpy as np

EIGER_GAP = np.iinfo(np.uint32).max


def _compression(kind):
    if kind is None:
        return {}
    if kind == "bslz4":
        return dict(hdf5plugin.Bitshuffle(cname="lz4"))
    if kind == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    raise ValueError(kind)


def _stack(group, name, frames, compression):
    frames = np.asarray(frames)
    chunks = (1, *frames.shape[1:]) if frames.ndim == 3 else None
    return group.create_dataset(name, data=frames, chunks=chunks, **_compression(compression))


def _time(group, name, value, units="s"):
    ds = group.create_dataset(name, data=value)
    ds.attrs["units"] = units
    return ds


def write_eiger(folder, name, frames, *, count_time=0.1, frame_time=0.1002,
                pixel_mask=None, cutoff=None, per_file=4, compression="bslz4",
                start_time="2026-03-14T09:26:53.589793"):
    """An Eiger master file and its data files; returns the master's path."""
    frames = np.asarray(frames)
    master = folder / f"{name}_master.h5"
    with h5py.File(master, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["start_time"] = start_time
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        for index, start in enumerate(range(0, len(frames), per_file), start=1):
            part = f"{name}_data_{index:06d}.h5"
            with h5py.File(folder / part, "w") as g:
                grp = g.create_group("entry/data")
                ds = _stack(grp, "data", frames[start:start + per_file], compression)
                ds.attrs["image_nr_low"] = start + 1
                ds.attrs["image_nr_high"] = min(start + per_file, len(frames))
            data[f"data_{index:06d}"] = h5py.ExternalLink(part, "/entry/data/data")
        inst = entry.create_group("instrument")
        inst.attrs["NX_class"] = "NXinstrument"
        det = inst.create_group("detector")
        det.attrs["NX_class"] = "NXdetector"
        _time(det, "count_time", count_time)
        _time(det, "frame_time", frame_time)
        det["description"] = b"Dectris EIGER2 Si 4M"
        _time(det, "x_pixel_size", 75e-6, "m")
        _time(det, "y_pixel_size", 75e-6, "m")
        spec = det.create_group("detectorSpecific")
        spec["nimages"] = len(frames)
        if pixel_mask is not None:
            spec.create_dataset("pixel_mask", data=np.asarray(pixel_mask, np.uint32),
                                **_compression(compression))
        if cutoff is not None:
            spec["countrate_correction_count_cutoff"] = cutoff
    return master


def write_lima(path, frames, *, exposure_time=0.5, latency_time=0.001, detector="basler",
               compression=None):
    """A LIMA HDF5 file."""
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry_0000")
        entry.attrs["NX_class"] = "NXentry"
        entry["start_time"] = "2026-03-14T10:00:00"
        det = entry.create_group(f"instrument/{detector}")
        entry["instrument"].attrs["NX_class"] = "NXinstrument"
        det.attrs["NX_class"] = "NXdetector"
        ds = _stack(det, "data", frames, compression)
        acq = det.create_group("acquisition")
        _time(acq, "exposure_time", exposure_time)
        _time(acq, "latency_time", latency_time)
        acq["nb_frames"] = len(frames)
        info = det.create_group("detector_information")
        info["model"] = b"acA2040"
        meas = entry.create_group("measurement")
        meas["data"] = ds                      # a hard link, as LIMA writes it
        plot = entry.create_group(detector)    # LIMA's NXdata for plotting
        plot.attrs["NX_class"] = "NXdata"
        plot.attrs["signal"] = "data"
        plot["data"] = ds
    return path


def write_bliss(path, frames, *, expo=0.2, detector="pilatus", compression="gzip",
                extra_counters=True):
    """A BLISS scan file with one detector and, optionally, 1-D counters."""
    with h5py.File(path, "w") as f:
        scan = f.create_group("1.1")
        scan.attrs["NX_class"] = "NXentry"
        scan["start_time"] = "2026-03-15T08:00:00+01:00"
        inst = scan.create_group("instrument")
        inst.attrs["NX_class"] = "NXinstrument"
        det = inst.create_group(detector)
        det.attrs["NX_class"] = "NXdetector"
        ds = _stack(det, "data", frames, compression)
        acq = det.create_group("acq_parameters")
        _time(acq, "acq_expo_time", expo)
        acq["acq_nb_frames"] = len(frames)
        meas = scan.create_group("measurement")
        meas.attrs["NX_class"] = "NXcollection"
        meas[detector] = ds
        if extra_counters:
            meas["diode"] = np.linspace(0, 1, len(frames))
            meas["epoch"] = np.arange(len(frames), dtype=float)
    return path


def write_nexus_default(path, frames, *, count_time=1.5, compression="gzip"):
    """A NeXus file whose default chain leads to the data."""
    with h5py.File(path, "w") as f:
        f.attrs["default"] = "scan"
        entry = f.create_group("scan")
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "plot"
        det = entry.create_group("instrument/cam")
        det.attrs["NX_class"] = "NXdetector"
        ds = _stack(det, "image", frames, compression)
        _time(det, "count_time", count_time * 1000, "ms")
        plot = entry.create_group("plot")
        plot.attrs["NX_class"] = "NXdata"
        plot.attrs["signal"] = "counts"
        plot["counts"] = ds
        # another image that is not the detector data
        entry.create_dataset("instrument/cam/flatfield", data=np.ones(frames.shape[-2:]))
    return path
