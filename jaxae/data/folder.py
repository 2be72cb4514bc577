"""Folders of images: PNG, JPEG and whatever else Pillow reads, as rows of pixels.

Two layouts, as torchvision's ``ImageFolder``:

- flat: the images lie in the folder itself; no labels.
- one subfolder per class: the subfolders, sorted by name, give labels 0..K-1 and
  their names are kept (``class_names``); a class's images lie in its subfolder
  itself (folders further down are not read).

Files are taken in sorted order (by class, then by name), so a folder
gives the same rows every time. Hidden files and folders (``.name``) and files
whose extension Pillow does not read are skipped. Every image becomes 8-bit
greyscale when all of them are greyscale, else RGB (alpha is dropped), and a row
is its pixels 0..255, row-major: ``H*W`` or ``H*W*3`` values.

:func:`open_folder` opens every file's header at once (a file Pillow cannot read,
or a size that differs from the others, is refused before any pixel is decoded);
its :class:`FolderRows` then decodes the images a slice at a time as rows are
read: loading reads them all, streaming a chunk at a time. Pillow is imported
only when a folder is read.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxae._validate import check_image_size
from jaxae.data.idx import idx_image_files
from jaxae.data.source import RowSource, one_line
from jaxae.errors import JaxaeError

GREY_MODES = ("1", "L", "LA", "La")
COLOUR_MODES = ("RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr")
_LAYOUT = "put the images in the folder itself, or in one subfolder per class"


class FolderRows(RowSource):
    """The images of a folder, decoded a slice at a time.

    Attributes (beside :class:`~jaxae.data.source.RowSource`'s; ``shape`` is
    ``(N, H, W)`` or ``(N, H, W, 3)``, ``dtype`` uint8):
      files: the image files, in row order.
      labels: ``(N,)`` int64 class indices, or ``None`` for a flat folder.
      class_names: the class subfolders' names, index ``k`` for label ``k``; or ``None``.
    """

    def __init__(
        self,
        path: Path,
        files: list[Path],
        shape: tuple[int, ...],
        labels: np.ndarray | None,
        class_names: tuple[str, ...] | None,
        *,
        resize: bool,
    ):
        super().__init__(path, shape, np.dtype(np.uint8))
        self.files, self.labels, self.class_names = files, labels, class_names
        self._mode = "RGB" if len(shape) == 4 else "L"
        self._resize = resize

    def read(self, start: int, stop: int) -> np.ndarray:
        image = _pillow()
        rows = np.empty((stop - start, self.width), np.uint8)
        for i, path in enumerate(self.files[start:stop]):
            rows[i] = self._decode(path, image)
        return rows

    def _decode(self, path: Path, image) -> np.ndarray:
        h, w = self.shape[1:3]
        try:
            with image.open(path) as im:
                if im.mode in ("P", "PA"):  # a palette's transparency, without Pillow's warning
                    im = im.convert("RGBA")
                im = im.convert(self._mode)
                if im.size != (w, h) and self._resize:
                    im = im.resize((w, h), image.Resampling.BICUBIC)
                pixels = np.asarray(im, np.uint8)
        except Exception as e:  # Pillow's decoders raise many kinds for a corrupt file
            raise _unreadable(path, e) from e
        if pixels.shape[:2] != (h, w):
            raise JaxaeError(
                f"{path} is {pixels.shape[0]}x{pixels.shape[1]}, not {h}x{w} as when "
                f"{self.path} was listed: it changed while being read; read the folder again"
            )
        return pixels.reshape(-1)


def open_folder(
    folder: str | os.PathLike, *, image_size: tuple[int, int] | None = None
) -> FolderRows:
    """Lists a folder of images and checks every file's header; decodes nothing yet.

    Args:
      folder: the folder, flat or with one subfolder per class (module docstring).
      image_size: ``(H, W)`` to resize every image of another size to (bicubic);
        ``None``: all images must have one size.

    Returns:
      A :class:`FolderRows` of uint8 rows, ``H*W`` (all greyscale) or ``H*W*3`` values.

    Raises:
      JaxaeError: no images, both layouts at once, an empty class folder, a file
        Pillow cannot read (or of 16-bit, float or other pixels), or images of
        different sizes without ``image_size``.
    """
    folder = Path(folder)
    if image_size is not None:
        image_size = check_image_size(image_size)
    files, labels, class_names = list_images(folder)
    image = _pillow()
    headers = [_header(p, image) for p in files]
    for path, (_, mode) in zip(files, headers, strict=True):
        if mode not in GREY_MODES + COLOUR_MODES:
            raise JaxaeError(
                f"{path} holds pixels of mode {mode} (16-bit, float or another colour space): "
                "save it as 8-bit greyscale or RGB"
            )
    colour = any(mode not in GREY_MODES for _, mode in headers)
    if image_size is None:
        (w, h), _ = headers[0]
        other = next((i for i, (size, _) in enumerate(headers) if size != (w, h)), None)
        if other is not None:
            (w2, h2), _ = headers[other]
            raise JaxaeError(
                f"images in {folder} have different sizes: {files[0].relative_to(folder)} is "
                f"{h}x{w} (H x W), {files[other].relative_to(folder)} is {h2}x{w2}: "
                "pass image_size=(H, W) to resize them all to one size"
            )
    else:
        h, w = image_size
    shape = (len(files), h, w, 3) if colour else (len(files), h, w)
    return FolderRows(folder, files, shape, labels, class_names, resize=image_size is not None)


def list_images(folder: Path) -> tuple[list[Path], np.ndarray | None, tuple[str, ...] | None]:
    """``(files, labels, class_names)`` of a folder of images, flat or by class.

    Raises:
      JaxaeError: the folder cannot be listed, holds no images, holds images both
        in itself and in subfolders, or has a class subfolder without images.
    """
    extensions = _extensions()
    entries = _entries(folder)
    top = _images(entries, extensions)
    classes = [p for p in entries if p.is_dir()]
    by_class = [_images(_entries(c), extensions) for c in classes]
    if top:
        nested = next((c for c, found in zip(classes, by_class, strict=True) if found), None)
        if nested is not None:
            raise JaxaeError(
                f"{folder} holds images both in itself and in its subfolder {nested.name}: "
                f"{_LAYOUT}"
            )
        return top, None, None
    if not any(by_class):
        raise JaxaeError(
            f"{folder} has no images (no file Pillow reads, such as .png or .jpg, and no "
            "IDX images file such as train-images-idx3-ubyte.gz): "
            "pass a folder of images or the folder holding MNIST"
        )
    empty = next((c for c, found in zip(classes, by_class, strict=True) if not found), None)
    if empty is not None:
        raise JaxaeError(
            f"the class folder {empty} has no images: add its images or remove it ({_LAYOUT})"
        )
    files = [p for found in by_class for p in found]
    labels = np.repeat(np.arange(len(classes), dtype=np.int64), [len(f) for f in by_class])
    return files, labels, tuple(c.name for c in classes)


def refuse_image_size(image_size, source: str | os.PathLike) -> None:
    """Refuses an ``image_size`` for ``source``, which is not a folder of images."""
    if image_size is not None:
        raise JaxaeError(
            f"image_size={tuple(image_size)} resizes the images of a folder, and {source} is "
            "not a folder of images: drop image_size="
        )


def is_image_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder that is read as images: one without IDX images files.

    Never raises; a folder that cannot be listed is not one (reading it says why).
    """
    try:
        return Path(path).is_dir() and not idx_image_files(Path(path))
    except (JaxaeError, OSError):
        return False


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as e:
        raise JaxaeError(
            f"cannot list {folder} ({e.strerror or one_line(e)}): pass a readable folder"
        ) from e


def _images(entries: list[Path], extensions: frozenset[str]) -> list[Path]:
    """The image files among a folder's ``entries``."""
    return [p for p in entries if p.suffix.lower() in extensions and p.is_file()]


def _header(path: Path, image) -> tuple[tuple[int, int], str]:
    """``((W, H), mode)`` from the file's header, or a one-line error naming it."""
    try:
        with image.open(path) as im:
            return im.size, im.mode
    except Exception as e:  # Pillow's plugins raise many kinds for a file they cannot read
        raise _unreadable(path, e) from e


def _unreadable(path: Path, e: Exception) -> JaxaeError:
    if type(e).__name__ == "UnidentifiedImageError":  # its message repeats the path
        reason = "not an image Pillow can read"
    else:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else one_line(e)
    return JaxaeError(f"cannot read {path} as an image ({reason}): replace the file, or remove it")


def _extensions() -> frozenset[str]:
    """The file extensions of the formats Pillow opens (``.png``, ``.jpg`` and more)."""
    image = _pillow()
    return frozenset(e for e, fmt in image.registered_extensions().items() if fmt in image.OPEN)


def _pillow():
    try:
        from PIL import Image
    except ImportError as e:  # a declared dependency: only a broken install lacks it
        raise JaxaeError("reading a folder of images needs Pillow: pip install pillow") from e
    return Image
