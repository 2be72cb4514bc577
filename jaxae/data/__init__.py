"""Loading image datasets: digits, MNIST (OpenML, cached), IDX, ``.npz``, ``.npy``, folders.

Sources: scikit-learn's bundled 8x8 digits, MNIST from OpenML (cached as
``<data_dir>/mnist_784.npz``), or a path to MNIST IDX files, a ``.npz``, a
``.npy`` or a folder of images (PNG, JPEG, ...). Loading validates at the
boundary and raises :class:`~jaxae.errors.JaxaeError`; scaling lives in
:mod:`jaxae.preprocess`.

Modules: :mod:`~jaxae.data.dataset` (:func:`load_dataset`, :class:`Dataset`),
:mod:`~jaxae.data.idx` (the IDX header parser and row reader, shared with
streaming), :mod:`~jaxae.data.npz` (``.npz`` and ``.npy``),
:mod:`~jaxae.data.folder` (folders of images, flat or one subfolder per class),
:mod:`~jaxae.data.mnist` (OpenML and its cache), :mod:`~jaxae.data.rows`
(any file as rows, for :func:`jaxae.stream.encode_file`) and
:mod:`~jaxae.data.source` (what the readers share).

Example:
  >>> from jaxae.data import load_dataset
  >>> from jaxae.preprocess import standardize
  >>> ds = load_dataset("digits", n=100)
  >>> ds.images.shape, ds.image_shape
  ((100, 64), (8, 8))
  >>> standardize(ds.images).shape
  (100, 64)
"""

from jaxae.data.dataset import Dataset, load_dataset
from jaxae.data.idx import read_idx
from jaxae.data.mnist import data_dir
from jaxae.data.npz import read_npy, read_npz
from jaxae.data.rows import is_streamable, open_rows

__all__ = [
    "Dataset",
    "data_dir",
    "is_streamable",
    "load_dataset",
    "open_rows",
    "read_idx",
    "read_npy",
    "read_npz",
]
