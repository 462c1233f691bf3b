"""An object store in memory, as a Beam FileSystem for `memfs://` paths.

Beam ships no in-memory filesystem, and GCS cannot be reached here. Defining
this subclass registers the scheme with `FileSystems` (it finds filesystems
by their subclasses' `scheme()`), so a job given memfs:// paths reads and
writes here through the same calls it makes to gs:// on Dataflow. It keeps
the rules of an object store, as Beam's GCSFileSystem does: no directories
(mkdirs does nothing, a "folder" is a key prefix and does not `exist`), a
listing is every key below a prefix, and a rename is a copy then a delete,
one object at a time. Every change is logged in `MemoryFileSystem.log`, and
`fail_renames_of` makes renames of matching objects fail, to test a commit
that breaks half-way.

The store is one dict for the process: use it with the DirectRunner in
memory (`--direct_running_mode=in_memory`).
"""

import io
import time
from typing import Dict, List, Optional, Tuple

from apache_beam.io.filesystem import (BeamIOError, CompressedFile,
                                       CompressionTypes, FileMetadata,
                                       FileSystem)

PREFIX = 'memfs://'


class _Object(io.BytesIO):
  """A write channel: the object exists once it is closed, as on GCS."""

  def __init__(self, path: str):
    super().__init__()
    self._path = path

  def close(self):
    if not self.closed:
      MemoryFileSystem.objects[self._path] = (self.getvalue(), time.time())
      MemoryFileSystem.log.append(('create', self._path))
    super().close()


class MemoryFileSystem(FileSystem):
  """memfs://bucket/key -> bytes, with an object store's semantics."""

  objects: Dict[str, Tuple[bytes, float]] = {}
  log: List[Tuple[str, ...]] = []
  fail_renames_of: Optional[str] = None  # a substring of the source path

  @classmethod
  def reset(cls) -> None:
    cls.objects.clear()
    cls.log.clear()
    cls.fail_renames_of = None

  @classmethod
  def scheme(cls):
    return 'memfs'

  def join(self, basepath, *paths):
    path = basepath
    for part in paths:
      path = path + part if path.endswith('/') else f'{path}/{part}'
    return path

  def split(self, path):
    path = path.strip()
    last = path.rfind('/', len(PREFIX))
    if last < 0:
      return path, ''
    return path[:last], path[last + 1:]

  def mkdirs(self, path):
    pass  # no directories

  def has_dirs(self):
    return False

  def _list(self, dir_or_prefix):
    for path, (data, updated) in sorted(self.objects.items()):
      if path.startswith(dir_or_prefix):
        yield FileMetadata(path, len(data), updated)

  def _wrapped(self, raw, path, compression_type):
    compression_type = FileSystem._get_compression_type(path,
                                                        compression_type)
    if compression_type == CompressionTypes.UNCOMPRESSED:
      return raw
    return CompressedFile(raw, compression_type=compression_type)

  def create(self, path, mime_type='application/octet-stream',
             compression_type=CompressionTypes.AUTO):
    return self._wrapped(_Object(path), path, compression_type)

  def open(self, path, mime_type='application/octet-stream',
           compression_type=CompressionTypes.AUTO):
    if path not in self.objects:
      raise BeamIOError('Open operation failed',
                        {path: FileNotFoundError(path)})
    return self._wrapped(io.BytesIO(self.objects[path][0]), path,
                         compression_type)

  def copy(self, source_file_names, destination_file_names):
    exceptions = {}
    for source, destination in zip(source_file_names, destination_file_names):
      if source in self.objects:
        self.objects[destination] = self.objects[source]
        self.log.append(('copy', source, destination))
      else:
        exceptions[(source, destination)] = FileNotFoundError(source)
    if exceptions:
      raise BeamIOError('Copy operation failed', exceptions)

  def rename(self, source_file_names, destination_file_names):
    exceptions = {}
    for source, destination in zip(source_file_names, destination_file_names):
      if self.fail_renames_of and self.fail_renames_of in source:
        exceptions[(source, destination)] = IOError('injected failure')
      elif source not in self.objects:
        exceptions[(source, destination)] = FileNotFoundError(source)
      else:
        self.objects[destination] = self.objects.pop(source)
        self.log.append(('rename', source, destination))
    if exceptions:
      raise BeamIOError('Rename operation failed', exceptions)

  def exists(self, path):
    return path in self.objects

  def size(self, path):
    return len(self.objects[path][0])

  def last_updated(self, path):
    return self.objects[path][1]

  def checksum(self, path):
    return str(hash(self.objects[path][0]))

  def metadata(self, path):
    if path not in self.objects:
      raise BeamIOError('Metadata operation failed',
                        {path: FileNotFoundError(path)})
    data, updated = self.objects[path]
    return FileMetadata(path, len(data), updated)

  def delete(self, paths):
    for path in paths:  # as on GCS, a missing object is no error
      if path.endswith('/'):
        targets = [p for p in self.objects if p.startswith(path)]
      else:
        targets = [path] if path in self.objects else []
      for target in targets:
        del self.objects[target]
        self.log.append(('delete', target))


def files(prefix: str = PREFIX) -> Dict[str, bytes]:
  """The objects below `prefix`: path -> content."""
  return {path: data for path, (data, _) in
          sorted(MemoryFileSystem.objects.items()) if path.startswith(prefix)}
