"""Mittal et al.'s latent TFRecords, read and written without TensorFlow.

A file is a sequence of records framed as TensorFlow writes them::

    uint64 length | uint32 masked CRC32-C of length | data[length] | uint32 masked CRC32-C of data

and each record's data is a ``tf.train.Example`` with two features: ``inputs`` (float list, the
flattened latent matrix) and ``input_shape`` (int64 list, e.g. ``[32, 512]``). The protobuf classes
and the writer come from the ``tfrecord`` package; the reader is ours because the package's reader
does not verify checksums, and a corrupt shard should stop training with its name and record.
"""

import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import crc32c
import numpy as np
from tfrecord import example_pb2
from tfrecord.writer import TFRecordWriter

from ddpm.errors import UserError
from ddpm.io.atomic import atomic_path


class RecordError(UserError, ValueError):
    """A TFRecord file or record that cannot be used; the message names file and record."""


def masked_crc(data: bytes) -> int:
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def iter_records(path: str | Path) -> Iterator[bytes]:
    """The data of every record in ``path``, each checked against its length and data checksums."""
    path = Path(path)
    blob = path.read_bytes()
    offset, index = 0, 0
    while offset < len(blob):
        where = f"{path.name}, record {index} (byte {offset})"
        if offset + 12 > len(blob):
            raise RecordError(f"{where}: truncated header ({len(blob) - offset} of 12 bytes) in {path}")
        length_bytes = blob[offset : offset + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        (length_crc,) = struct.unpack("<I", blob[offset + 8 : offset + 12])
        if length_crc != masked_crc(length_bytes):
            raise RecordError(f"{where}: length checksum mismatch; the file is corrupt: {path}")
        start, end = offset + 12, offset + 12 + length
        if end + 4 > len(blob):
            raise RecordError(f"{where}: truncated: {length + 4} bytes of data expected, {len(blob) - start} left")
        data = blob[start:end]
        (data_crc,) = struct.unpack("<I", blob[end : end + 4])
        if data_crc != masked_crc(data):
            raise RecordError(f"{where}: data checksum mismatch; the file is corrupt: {path}")
        yield data
        offset, index = end + 4, index + 1


def read_latents(path: str | Path, input_shape: Sequence[int] | None = None) -> np.ndarray:
    """All latent matrices of one file: ``[N, *input_shape]`` float32.

    With ``input_shape``, every record's own ``input_shape`` must equal it; without, the first
    record's shape is used and the rest must agree.
    """
    path = Path(path)
    expected = list(input_shape) if input_shape is not None else None
    out = []
    for index, data in enumerate(iter_records(path)):
        where = f"{path.name}, record {index}"
        example = example_pb2.Example()
        try:
            example.ParseFromString(data)
        except Exception as e:  # noqa: BLE001 - protobuf's DecodeError differs between backends
            raise RecordError(f"{where}: not a tf.train.Example ({e}) in {path}") from e
        features = example.features.feature
        if "inputs" not in features:
            raise RecordError(f"{where}: no 'inputs' feature (has {sorted(features)}) in {path}")
        shape = list(features["input_shape"].int64_list.value) if "input_shape" in features else None
        values = np.asarray(features["inputs"].float_list.value, dtype=np.float32)
        if expected is None:
            expected = shape or [len(values)]
        if shape is not None and shape != expected:
            raise RecordError(f"{where}: input_shape {shape} disagrees with the configured input_shape {expected}")
        if values.size != int(np.prod(expected)):
            needed = int(np.prod(expected))
            raise RecordError(f"{where}: {values.size} values in 'inputs'; input_shape {expected} needs {needed}")
        if not np.isfinite(values).all():
            raise RecordError(f"{where}: 'inputs' holds NaN or Inf values in {path}")
        out.append(values.reshape(expected))
    if not out:
        return np.zeros((0, *(expected or [0])), np.float32)
    return np.stack(out)


def write_latents(path: str | Path, latents: np.ndarray) -> Path:
    """Write ``[N, *shape]`` latents as one TFRecord file in Mittal's format (``inputs``, ``input_shape``)."""
    latents = np.asarray(latents, dtype=np.float32)
    shape = [int(s) for s in latents.shape[1:]]
    with atomic_path(path) as tmp:
        writer = TFRecordWriter(str(tmp))
        try:
            for x in latents:
                writer.write({"inputs": (x.ravel().tolist(), "float"), "input_shape": (shape, "int")})
        finally:
            writer.close()
    return Path(path)
