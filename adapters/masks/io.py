"""Read label maps and brain masks into one canonical orientation; write masks back as NIfTI.

Every volume is brought to RAS+ voxel order (nibabel's "closest canonical": axes permuted and
flipped, no interpolation), so axis 0 runs left→Right, axis 1 posterior→Anterior and axis 2
inferior→Superior whatever the file stored. ``Geometry`` remembers how to undo that and the
file's own affine, so ``write_mask`` puts a mask back voxel for voxel in the input's array order
with the input's affine: nibabel and SimpleITK read the result with the input's geometry.

NIfTI (``.nii``, ``.nii.gz``) is read with nibabel; anything else (``.mha``, ``.mhd``,
``.nrrd``, ``.nhdr``, …) with SimpleITK, whose LPS geometry is converted to a RAS affine. A
folder holding one DICOM series (the files of one scan, a slice each, as scanners export them)
is read with SimpleITK's GDCM series reader, which orders the slices by position and applies
each file's rescale slope and intercept. Every problem is a ``DataError`` naming the file or
folder.
"""

from __future__ import annotations

import gzip
import locale
import math
import os
import re
import sys
import tempfile
import threading
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ...files import atomic_path
from ..errors import DataError

__all__ = ["Geometry", "Volume", "detached_data_files", "is_dicom_series", "is_nifti", "read_brain_mask",
           "read_geometry", "read_label_map", "require_one_grid", "write_mask"]

_RAS = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_nifti(path: str | Path) -> bool:
    name = Path(path).name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


@dataclass
class Geometry:
    """Where a volume's voxels sit: enough to write a mask back exactly as the input was stored.

    affine, shape: the file's own 4×4 voxel-to-RAS-mm affine and array shape.
    ornt: nibabel orientation (per file axis: canonical axis, flip) taking the file's array
    to canonical RAS order. qform_code / sform_code: the NIfTI header codes to write back.
    qform: the file's qform where it differs from ``affine`` (a NIfTI whose sform and qform
    disagree: ``affine`` is then the sform); written back as it was, since ITK reads the qform.
    """

    affine: np.ndarray
    shape: tuple[int, int, int]
    ornt: np.ndarray
    qform_code: int = 1
    sform_code: int = 1
    source: str = ""
    qform: np.ndarray | None = None

    @property
    def canonical_affine(self) -> np.ndarray:
        from nibabel.orientations import inv_ornt_aff

        return self.affine @ inv_ornt_aff(self.ornt, self.shape)

    @property
    def canonical_shape(self) -> tuple[int, int, int]:
        return tuple(int(self.shape[int(axis)]) for axis in np.argsort(self.ornt[:, 0]))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the canonical axes."""
        return tuple(float(v) for v in np.sqrt((self.canonical_affine[:3, :3] ** 2).sum(0)))

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        from nibabel.orientations import apply_orientation

        return np.ascontiguousarray(apply_orientation(array, self.ornt))

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        from nibabel.orientations import apply_orientation, ornt_transform

        if tuple(array.shape) != self.canonical_shape:
            raise ValueError(f"array of shape {array.shape} does not fit the canonical shape {self.canonical_shape}")
        return np.ascontiguousarray(apply_orientation(array, ornt_transform(_RAS, self.ornt)))

    def to_dict(self) -> dict:
        return {"affine": self.affine.tolist(), "shape": list(self.shape), "ornt": self.ornt.tolist(),
                "qform_code": int(self.qform_code), "sform_code": int(self.sform_code), "source": self.source,
                "qform": None if self.qform is None else self.qform.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "Geometry":
        return cls(affine=np.asarray(data["affine"], dtype=float), shape=tuple(int(s) for s in data["shape"]),
                   ornt=np.asarray(data["ornt"], dtype=float), qform_code=int(data.get("qform_code", 1)),
                   sform_code=int(data.get("sform_code", 1)), source=str(data.get("source", "")),
                   qform=None if data.get("qform") is None else np.asarray(data["qform"], dtype=float))


def require_one_grid(reference: Geometry, other: Geometry, reference_name, other_name) -> None:
    """DataError naming ``other`` unless its voxels are ``reference``'s. Both are read in canonical
    voxel order, so the same voxels stored in another axis order (LPS beside RAS) are one grid."""
    if other.canonical_shape != reference.canonical_shape:
        raise DataError(f"{other_name}: shape {_shape(other)} differs from {reference_name}'s {_shape(reference)} "
                        "(not the same voxels)")
    if not np.allclose(other.canonical_affine, reference.canonical_affine, atol=1e-3):
        raise DataError(f"{other_name}: its voxel-to-world affine differs from {reference_name}'s "
                        "(the two are not on one grid)")


def _shape(geometry: Geometry) -> str:
    """The shape as stored, and in RAS order where that differs (what the voxels are compared in)."""
    stored = tuple(int(n) for n in geometry.shape)
    return str(stored) if stored == geometry.canonical_shape else f"{stored} ({geometry.canonical_shape} in RAS order)"


@dataclass
class Volume:
    """A volume in canonical RAS voxel order, with the geometry of the file it came from."""

    data: np.ndarray
    geometry: Geometry
    path: Path = field(default_factory=Path)

    @property
    def spacing(self) -> tuple[float, float, float]:
        return self.geometry.spacing


# what each reader returns: the array as stored, its RAS affine, the NIfTI codes to write back, and
# the qform where a NIfTI's differs from that affine (None elsewhere)
_Read = tuple[np.ndarray, np.ndarray, int, int, "np.ndarray | None"]


def _read_nifti(path: Path) -> _Read:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        shape = tuple(int(n) for n in image.shape)
        n_bytes = math.prod(shape) * image.get_data_dtype().itemsize
        held = None if str(path).lower().endswith(".gz") else path.stat().st_size  # compressed: unknown until read
        # where the voxels start: nibabel reads vox_offset into the array proxy and leaves 0 in the header
        offset = int(getattr(image.dataobj, "offset", image.header["vox_offset"]))
        header = image.header
        if header["magic"].item() == header.single_magic and offset < header.single_vox_offset:
            # nibabel takes vox_offset 0 as "unset" and reads from byte 0: the header became voxels, the scan moved
            raise DataError(f"{path}: its header puts the voxels at byte {offset} (vox_offset), inside its own "
                            f"{header.single_vox_offset}-byte header: a damaged header (the voxels would be read "
                            "shifted)")
        if held is not None and offset + n_bytes > held:
            raise DataError(f"{path}: its header gives shape {shape} ({n_bytes:,} bytes of voxels from byte "
                            f"{offset:,}: {offset + n_bytes:,} in all) but the file holds {held:,} bytes: truncated "
                            "or a damaged header")
        data = np.asanyarray(image.dataobj)
        while data.ndim > 4 and data.shape[-1] == 1:  # (X, Y, Z, 1, 1): a 3-D scan, as SimpleITK reads it
            data = data[..., 0]
    except DataError:
        raise
    except MemoryError:  # a header claiming a huge shape: nibabel allocates it before reading the stream
        raise DataError(f"{path}: its header gives shape {shape}, too large to read into memory "
                        "(a damaged header?)") from None
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError, nib.filebasedimages.ImageFileError,
            nib.spatialimages.HeaderDataError) as err:
        raise DataError(f"{path}: not a readable NIfTI file (corrupt or truncated?): {_first_line(err)}") from None
    header = image.header
    return (data, _nifti_affine(image, path), int(header["qform_code"]), int(header["sform_code"]),
            _distinct_qform(image))


# NIfTI's spatial units in mm; "unknown" is read as mm, as nibabel and ITK both do
_UNIT_MM = {"meter": 1000.0, "mm": 1.0, "micron": 0.001, "unknown": 1.0}
_WARNED_UNORIENTED: set[str] = set()


def _in_mm(matrix: np.ndarray, header) -> np.ndarray:
    """A voxel-to-world matrix of a NIfTI header's spatial unit, in mm."""
    scale = _UNIT_MM.get(header.get_xyzt_units()[0], 1.0)
    return matrix if scale == 1.0 else np.diag([scale, scale, scale, 1.0]) @ matrix


def _nifti_affine(image, path: Path) -> np.ndarray:
    """A loaded NIfTI's voxel-to-world affine in mm. nibabel gives it in the header's unit, so a
    file in metres had voxels of 0.001 "mm" (its masks came back empty) while SimpleITK, which
    converts, read 1 mm. A file that sets neither qform nor sform has no orientation: it is read as
    nibabel reads it (x mirrored against ITK's reading), with a warning."""
    affine = _in_mm(np.asarray(image.affine, dtype=float), image.header)
    header = image.header
    if int(header["qform_code"]) == 0 and int(header["sform_code"]) == 0 and str(path) not in _WARNED_UNORIENTED:
        from ...progress import warn  # a BindiffWarning: one line from the bindiff command

        warn(f"{path}: no orientation (qform and sform codes are 0); read with nibabel's default, "
            "x mirrored against SimpleITK's reading: set the file's affine if its left and right matter")
        _WARNED_UNORIENTED.add(str(path))  # after: a warning made an error stays one on every read
    return affine


def _is_dicom_file(path: Path) -> bool:
    """A DICOM file: named ``*.dcm``, or carrying the "DICM" marker after its 128-byte preamble
    (scanners often export files with no suffix at all)."""
    if path.name.startswith(".") or not path.is_file():
        return False
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def is_dicom_series(path: str | Path) -> bool:
    """True when ``path`` is a folder that directly holds DICOM files (a scan exported as slices)."""
    path = Path(path)
    return path.is_dir() and any(_is_dicom_file(p) for p in path.iterdir())


# setlocale and the dup2 of fd 2 change the whole process: reads from several threads take turns
_PROCESS_STATE = threading.RLock()


@contextmanager
def _locale_kept() -> Iterator[None]:
    """GDCM may switch the C locale to "C" while it parses DICOM tags and leave it so (its writer
    does); Python's default text encoding then becomes ASCII for the rest of the process."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


@contextmanager
def _c_numeric() -> Iterator[None]:
    """ITK's NRRD reader parses header numbers with the C library's strtod: in a process whose
    LC_NUMERIC uses a decimal comma (a Qt application sets it from the environment), "1.5" reads
    as 1 and the voxel size and origin come back truncated without a word."""
    saved = locale.setlocale(locale.LC_NUMERIC)
    if saved == "C":
        yield
        return
    locale.setlocale(locale.LC_NUMERIC, "C")
    try:
        yield
    finally:
        locale.setlocale(locale.LC_NUMERIC, saved)


@contextmanager
def _native_stderr_held() -> Iterator[None]:
    """Hold what ITK, MetaIO and GDCM print to the process's stderr from C++ during a read: passed
    on when the read succeeds, dropped when it fails (bindiff's one line says why instead). A
    process without a stderr (``2>&-``) has nothing to hold."""
    if sys.stderr is not None:
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # fd 2 closed: ITK's lines go nowhere either way
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        succeeded = False
        try:
            yield
            succeeded = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if succeeded:
                held.seek(0)
                if text := held.read():
                    os.write(2, text)


def _read_dicom_series(path: Path) -> _Read:
    with _PROCESS_STATE, _locale_kept(), _native_stderr_held():
        return _read_gdcm_series(path)


def _read_gdcm_series(path: Path) -> _Read:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    try:
        series = reader.GetGDCMSeriesIDs(str(path))
    except RuntimeError as err:
        raise DataError(f"{path}: cannot list its DICOM series: {_first_line(err)}") from None
    if not series:
        raise DataError(f"{path}: holds no readable DICOM series (corrupt files, or not images?)")
    if len(series) > 1:
        raise DataError(f"{path}: holds {len(series)} DICOM series ({', '.join(series[:3])}"
                        f"{', …' if len(series) > 3 else ''}); give each scan a folder of its own")
    files = reader.GetGDCMSeriesFileNames(str(path), series[0])
    stray = sorted({p.name for p in path.iterdir() if _is_dicom_file(p)} - {Path(f).name for f in files})
    if stray:  # GDCM skips a file it cannot parse: the scan would silently lose a slice
        raise DataError(f"{path}: {len(stray)} DICOM file(s) are not part of its series ({', '.join(stray[:3])}"
                        f"{', …' if len(stray) > 3 else ''}): corrupt, or from another scan")
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # uneven slices get our one-line error below
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise DataError(f"{path}: SimpleITK cannot read this DICOM series (corrupt or incomplete?): "
                        f"{_first_line(err)}") from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    _check_even_slices(reader, len(files), path)
    return _itk_arrays(image, path)


def _check_even_slices(reader, n: int, path: Path) -> None:
    """Refuse a series whose slices are not evenly spaced along their normal (a slice missing, or
    two stacks mixed): the volume would be read on one spacing and the mask land off the anatomy.
    Series without Image Position / Orientation (Patient) tags are not checked."""
    tags = ("0020|0032", "0020|0037")
    if n < 3 or not all(reader.HasMetaDataKey(i, tag) for i in range(n) for tag in tags):
        return
    try:
        orientation = np.array([float(v) for v in reader.GetMetaData(0, "0020|0037").split("\\")])
        positions = np.array([[float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")]
                              for i in range(n)])
        normal = np.cross(orientation[:3], orientation[3:])
    except ValueError:  # tags that do not parse as six and three numbers: GDCM placed the slices without them
        return
    gaps = np.abs(np.diff(np.sort(positions @ normal)))
    step = float(np.median(gaps))
    if step <= 0 or np.abs(gaps - step).max() > max(0.01 * step, 1e-3):
        raise DataError(f"{path}: its {n} slices are not evenly spaced (gaps from {gaps.min():.3g} to "
                        f"{gaps.max():.3g} mm): a slice missing, or two stacks in one series")


_HEADER_LIMIT = 1 << 20  # a text header longer than this is refused rather than read in part


def _data_files_named(path: Path) -> list[str] | None:
    """The data files a MetaImage (``ElementDataFile``) or NRRD (``data file``) header names, read
    from its whole text header (``LOCAL``: the data follow the header itself); None when the header
    does not end within _HEADER_LIMIT bytes (padding could hide the key past any shorter read)."""
    with open(path, "rb") as handle:
        head = handle.read(_HEADER_LIMIT + 1)
    lines = head.decode("latin-1").splitlines()
    for i, line in enumerate(lines):
        key = re.match(r"\s*(?:ElementDataFile\s*=|(?i:data ?file)\s*:)\s*(.*?)\s*$", line)
        if key:
            value = key.group(1)
            if not value or value.upper() == "LOCAL":
                return []
            if value.upper().startswith("LIST"):  # one file name a line after it
                return [entry.strip() for entry in lines[i + 1:] if entry.strip()]
            return [value.split()[0]]  # a file, or a printf pattern with its numbers after it
        if not line.strip() and path.suffix.lower() == ".nrrd":  # an attached NRRD: the data follow
            return []
    return None if len(head) > _HEADER_LIMIT else []


def detached_data_files(path: str | Path) -> list[Path]:
    """The voxel files beside a MetaImage (``.mhd``) or detached NRRD (``.nhdr``) header that it
    reads (none for another file, an attached header, or a printf pattern of names); read with it."""
    path = Path(path)
    if path.suffix.lower() not in (".mhd", ".nhdr") or not path.is_file():
        return []
    try:
        names = _data_files_named(path) or []
    except OSError:
        return []
    return [path.parent / name for name in names if "%" not in name]


def _refuse_data_elsewhere(path: Path) -> None:
    """A header naming its voxels' file outside its own folder (``/etc/passwd``, ``../../x.raw``)
    is refused: ITK would read that file's bytes as the image, and bindiff echo them back. The
    data file itself may be a link (git-annex and DataLad keep every file so); the folders on the
    way to it may not lead out."""
    if path.suffix.lower() not in (".mha", ".mhd", ".nrrd", ".nhdr"):
        return
    try:
        names = _data_files_named(path)
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from None
    if names is None:
        raise DataError(f"{path}: its text header runs past {_HEADER_LIMIT:,} bytes; refused (a damaged header?)")
    folder = path.parent.resolve()
    for name in names:
        target = (folder / name).parent.resolve()
        if not target.is_relative_to(folder):  # folder / "/abs/x" is /abs/x
            raise DataError(f"{path}: its header reads the voxels from {name}, outside the header's folder; "
                            "refused (keep the data file beside its header)")
        if "%" not in name and not (folder / name).exists():  # a printf pattern names no one file
            raise DataError(f"{path}: its header reads the voxels from {name}, which is not in {folder} "
                            "(keep the data file beside its header)")


def _read_itk(path: Path) -> _Read:
    import SimpleITK as sitk

    _refuse_data_elsewhere(path)
    try:
        with _PROCESS_STATE, _c_numeric(), _native_stderr_held():
            image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise DataError(f"{path}: SimpleITK cannot read it (corrupt, truncated or not an image?): "
                        f"{_first_line(err)}") from None
    return _itk_arrays(image, path)


def _itk_arrays(image, path: Path) -> _Read:
    """A SimpleITK image as an (x, y, z) array and its RAS affine (NIfTI codes 1, 1)."""
    import SimpleITK as sitk

    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(f"{path}: has {image.GetNumberOfComponentsPerPixel()} components per voxel (colour or "
                        "vector data); a scan or label map has one")
    dim = image.GetDimension()
    data = sitk.GetArrayFromImage(image)  # (z, y, x) for 3-D, (t, z, y, x) for 4-D
    data = np.transpose(data, tuple(reversed(range(data.ndim))))
    if dim not in (3, 4):
        return data, np.eye(4), 1, 1, None  # refused by the shape check with the right message
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(dim, dim)
    if dim == 4 and (np.any(direction[:3, 3] != 0) or np.any(direction[3, :3] != 0)):
        raise DataError(f"{path}: its fourth axis is tilted into space; a 4-D image here is a stack of 3-D "
                        "volumes (channels or time points)")
    lps = np.eye(4)  # the first three axes are space, whatever follows them
    lps[:3, :3] = direction[:3, :3] * np.asarray(image.GetSpacing()[:3], dtype=float)[None, :]
    lps[:3, 3] = image.GetOrigin()[:3]
    return data, _LPS_TO_RAS @ lps, 1, 1, None


def _first_line(err: BaseException) -> str:
    """The reason an exception gives, on one line."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Exception thrown in SimpleITK"):
        # SimpleITK's first line says where in ITK's C++ it was thrown. The reason follows: ITK's
        # message, then for a chain of readers (NRRD's "[nrrd] ..." lines) the innermost cause.
        reason = re.sub(r"^(itk::)?(ITK )?ERROR:\s*\w+\(0x[0-9a-fA-F]+\):\s*", "", lines[1])
        if len(lines) > 2:
            reason += " " + re.sub(r"^\[\w+\]\s*\w+:\s*", "", lines[-1])
        return reason
    # nibabel names the file it read from, empty for a gzip stream: "got 31061 bytes from "
    return re.sub(r"\s+from$", "", lines[0]) if lines else type(err).__name__


def _read(path: str | Path, what: str, channels: bool = False,
          contiguous: bool = True) -> tuple[np.ndarray, Geometry, Path]:
    """A volume in canonical order; ``channels``: a 4-D file is several channels on its last axis,
    returned as (X, Y, Z, C). ``contiguous=False``: the canonical array may be a view of the file's
    (flipped or transposed axes), for a caller that makes a new array of it anyway: one copy of the
    whole volume in the file's own type is saved."""
    path = Path(path)
    if path.is_dir() and is_dicom_series(path):
        read = _read_dicom_series
    elif not path.is_file():
        raise DataError(f"{path}: {what} file not found" + (" (a folder, but no DICOM files in it)"
                                                             if path.is_dir() else ""))
    else:
        read = _read_nifti if is_nifti(path) else _read_itk
    data, affine, qcode, scode, qform = read(path)
    if data.ndim == 4 and data.shape[3] == 1 and not channels:
        data = data[..., 0]
    several = channels and data.ndim == 4  # (X, Y, Z, C): the grid is the first three axes
    if data.ndim != 3 and not several:
        raise DataError(f"{path}: expected a 3-D {what}, got an array of shape {tuple(data.shape)}"
                        + (" (a 4-D image, e.g. several modalities or time points?)" if data.ndim == 4 else ""))
    geometry = _geometry(affine, data.shape, qcode, scode, path, qform)
    if not contiguous:
        from nibabel.orientations import apply_orientation

        return apply_orientation(data, geometry.ornt), geometry, path
    return geometry.to_canonical(data), geometry, path


def _distinct_qform(image) -> np.ndarray | None:
    """A loaded NIfTI's qform when both codes are set and it differs from the sform (nibabel's affine)."""
    header = image.header
    if int(header["qform_code"]) == 0 or int(header["sform_code"]) == 0:
        return None  # the affine is the one form the file sets (or nibabel's guess)
    qform = np.asarray(header.get_qform(), dtype=float)
    if not np.isfinite(qform).all() or abs(np.linalg.det(qform[:3, :3])) < 1e-12:
        return None  # a damaged qform (NaN quaternion) beside the sform read: written back as the sform
    return None if np.allclose(qform, image.affine, atol=1e-6) else _in_mm(qform, header)  # mm, as the affine


def _geometry(affine: np.ndarray, shape, qcode: int, scode: int, path: Path,
              qform: np.ndarray | None = None) -> Geometry:
    from nibabel.orientations import io_orientation

    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DataError(f"{path}: the voxel-to-world affine is singular or not finite")
    return Geometry(affine=affine, shape=tuple(int(s) for s in shape[:3]), ornt=io_orientation(affine),
                    qform_code=qcode, sform_code=scode, source=str(path), qform=qform)


def read_geometry(path: str | Path) -> Geometry:
    """A label map's geometry from its header alone where the format allows it (a 3-D NIfTI: no
    voxel is read), else from reading the file (``read_label_map``'s checks apply)."""
    import nibabel as nib

    path = Path(path)
    if path.is_file() and is_nifti(path):
        try:
            image = nib.load(str(path))
        except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError, nib.filebasedimages.ImageFileError,
                nib.spatialimages.HeaderDataError) as err:
            raise DataError(f"{path}: not a readable NIfTI file (corrupt or truncated?): {_first_line(err)}") from None
        if len(image.shape) == 3:
            header = image.header
            return _geometry(_nifti_affine(image, path), image.shape, int(header["qform_code"]),
                             int(header["sform_code"]), path, _distinct_qform(image))
    return read_label_map(path).geometry


def read_label_map(path: str | Path, compact: bool = False) -> Volume:
    """An integer label map in canonical order; refuses 4-D data, non-integer values and floats
    beyond 64-bit integers. A map stored as integers keeps its type; one stored as floats is
    returned as int64, or with ``compact`` as the narrowest of uint8, int8, int16 and int32 that
    holds its values (a BraTS map then takes 9 MiB instead of 68), for a caller that only binarises it."""
    data, geometry, path = _read(path, "label map", contiguous=False)  # each branch makes its own C-order array
    if data.dtype.kind == "b":
        data = data.astype(np.uint8, order="C")
    elif data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            raise DataError(f"{path}: label map holds {int((~finite).sum())} NaN or infinite values")
        fractional = data != np.round(data)
        if fractional.any():
            examples = ", ".join(f"{v:.9g}" for v in np.unique(data[fractional])[:5])  # 0.99999997, not 1
            raise DataError(f"{path}: label map holds non-integer values ({examples}); "
                            "a label map stores whole-number labels")
        del finite, fractional
        low, high = (int(data.min()), int(data.max())) if data.size else (0, 0)
        if not _INT64.min <= low <= high <= _INT64.max:  # the cast would wrap: 1e19 read as -9223372036854775808
            raise DataError(f"{path}: label map holds {low if low < _INT64.min else high:.6g}, beyond the "
                            "64-bit integers a label is read as")
        data = data.astype(_label_type(low, high) if compact else np.int64, order="C")
    elif data.dtype.kind not in "iu":
        raise DataError(f"{path}: label map has data type {data.dtype}, not integers")
    else:
        data = np.ascontiguousarray(data)
    return Volume(data=data, geometry=geometry, path=path)


_INT64 = np.iinfo(np.int64)


def _label_type(low: int, high: int) -> type:
    """The narrowest integer type holding every whole number from ``low`` to ``high`` (int64
    beyond int32's range): 256 is int16, never uint8's 0."""
    for kind in (np.uint8, np.int8, np.int16, np.int32):
        if np.iinfo(kind).min <= low and high <= np.iinfo(kind).max:
            return kind
    return np.int64


def read_brain_mask(path: str | Path, threshold: float = 0.5) -> Volume:
    """A brain mask as booleans: 0 outside the brain, values above ``threshold`` inside (BraTS
    2015 brain masks read as 0.99999997 because of their scaling; 0/255 masks are common). Other
    values (negative, NaN, or in (0, threshold]: a probability map, a small-valued image) and a
    mask that marks nothing are refused, naming the file.
    """
    data, geometry, path = _read(path, "brain mask")
    if data.dtype.kind not in "biuf":
        raise DataError(f"{path}: brain mask has data type {data.dtype}, not numbers")
    data = np.asarray(data)
    # values the threshold would silently drop or keep by chance: a probability map or an image
    # of small intensities is not a mask
    unclear = np.isnan(data) | (data < 0) | ((data > 0) & (data <= threshold))
    if unclear.any():
        raise DataError(f"{path}: a brain mask holds 0 outside the brain and values above {threshold} inside; "
                        f"{int(unclear.sum())} voxel(s) hold other values (e.g. {data[unclear].flat[0]:.3g})")
    mask = data > threshold
    if not mask.any():
        raise DataError(f"{path}: the brain mask marks no voxel (every value is 0)")
    return Volume(data=mask, geometry=geometry, path=path)


def write_mask(mask: np.ndarray, geometry: Geometry, path: str | Path) -> Path:
    """Write a canonical-order mask as NIfTI (uint8, 0/1) in the input's array order and affine.

    ``mask`` holds booleans or 0/1 (a probability map or a label map is refused: it would be
    truncated). ``.nii.gz`` names are gzip-compressed; the file appears atomically.
    """
    if not isinstance(geometry, Geometry):  # a Volume, say: its .geometry is meant
        raise TypeError(f"geometry: expected a Geometry (such as volume.geometry), got {type(geometry).__name__}")
    mask = np.asarray(mask)
    if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
        raise ValueError(f"{path}: a mask holds 0 and 1 only, got values such as "
                         f"{mask[~np.isin(mask, (0, 1))].flat[0].item()!r}; threshold or binarise it first")
    return write_volume(mask.astype(np.uint8), geometry, path)


def _nifti_dtype(values: np.ndarray) -> np.ndarray:
    """``values`` in a type NIfTI-1 stores: booleans as uint8, float16 as float32, 64-bit integers
    as the smallest of int16 / int32 that holds them (read_label_map returns int64)."""
    if values.dtype == bool:
        return values.astype(np.uint8)
    if values.dtype == np.float16:
        return values.astype(np.float32)
    if values.dtype.kind in "iu" and values.dtype.itemsize == 8:
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        for kind in (np.int16, np.int32):
            if np.iinfo(kind).min <= low and high <= np.iinfo(kind).max:
                return values.astype(kind)
        raise ValueError(f"values from {low} to {high} do not fit the 32-bit integers NIfTI-1 stores")
    return values


def write_volume(values: np.ndarray, geometry: Geometry, path: str | Path) -> Path:
    """Write a canonical-order volume (a mask, an uncertainty map) as NIfTI in its input's array
    order and affine, in the array's own dtype (booleans, float16 and 64-bit integers in the
    nearest type NIfTI-1 stores); ``.nii.gz`` is gzip-compressed, the file atomic."""
    import nibabel as nib

    path = Path(path)
    if not is_nifti(path):
        raise ValueError(f"{path}: output volumes are NIfTI; use a .nii or .nii.gz name")
    array = geometry.from_canonical(_nifti_dtype(np.asarray(values)))
    image = nib.Nifti1Image(array, geometry.affine)
    image.header.set_data_dtype(array.dtype)
    image.header.set_xyzt_units("mm")
    # The input's own codes: nibabel and ITK each choose between qform and sform by them (and guess
    # a geometry, differently, when both are 0), so each reads the output as it read the input.
    image.set_qform(geometry.affine if geometry.qform is None else geometry.qform, code=geometry.qform_code)
    image.set_sform(geometry.affine, code=geometry.sform_code)
    payload = image.to_bytes()
    if path.name.lower().endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return path
