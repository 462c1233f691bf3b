"""PROVISIONAL (replaced by the infra branch): the ML Metadata store of a configuration."""
import os
from ml_metadata.proto import metadata_store_pb2
from pipeline.config import Config


class StoreError(Exception):
  pass


def connection_config(config: Config, read_only: bool = False):
  connection = metadata_store_pb2.ConnectionConfig()
  connection.sqlite.filename_uri = config.paths.metadata
  connection.sqlite.connection_mode = (
      metadata_store_pb2.SqliteMetadataSourceConfig.READONLY if read_only else
      metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
  return connection


def open_store(config: Config, read_only: bool = False):
  import ml_metadata as mlmd
  if read_only and not os.path.isfile(config.paths.metadata):
    raise StoreError(f'no ML Metadata store at {config.paths.metadata}: no run has recorded anything yet; run `repairml run` first.')
  return mlmd.MetadataStore(connection_config(config, read_only))
