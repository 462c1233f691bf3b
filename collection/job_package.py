"""The collection job's code as Dataproc Serverless runs it: the main file and a zip of its modules.

A Dataproc Serverless batch runs a main Python file with a zip of packages on
sys.path (vertex.collection.job_main_uri and job_package_uri). build() writes
both: job.py, and collection.zip with exactly the modules of this package that
job.py imports, found by following its imports (modulefinder), not by a list
kept by hand. The zip is deterministic (sorted names, fixed timestamps), so
the same code gives the same bytes and the same sha256.

    python -m collection.job_package --out runs/collection-package [--config configs/vertex.yaml]

prints the two files and, with a Vertex configuration, the commands that upload them.
"""
from __future__ import annotations

import argparse
import hashlib
import modulefinder
import os
import shutil
import sys
import zipfile
from dataclasses import dataclass

__all__ = ["JobPackage", "job_modules", "build", "main"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_REPOSITORY = os.path.dirname(_PACKAGE_DIR)
_MAIN_FILE = os.path.join(_PACKAGE_DIR, "job.py")
_ZIP_TIME = (2026, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class JobPackage:
    main_file: str
    package_zip: str
    modules: tuple[str, ...]   # paths inside the zip
    sha256: str                # of the zip


def job_modules() -> list[str]:
    """The files of this package that collection/job.py imports, as paths relative to the repository."""
    finder = modulefinder.ModuleFinder(path=[_REPOSITORY], excludes=["pyspark", "py4j", "pandas", "numpy",
                                                                     "pyarrow"])
    finder.run_script(_MAIN_FILE)
    files = {"collection/__init__.py", "collection/job.py"}
    for name, module in finder.modules.items():
        if (name == "collection" or name.startswith("collection.")) and module.__file__:
            files.add(os.path.relpath(module.__file__, _REPOSITORY).replace(os.sep, "/"))
    return sorted(files)


def build(out_dir: str) -> JobPackage:
    """Writes OUT/job.py and OUT/collection.zip (each through a temporary name); returns what it wrote."""
    os.makedirs(out_dir, exist_ok=True)
    modules = job_modules()
    main_file = os.path.join(out_dir, "job.py")
    package_zip = os.path.join(out_dir, "collection.zip")
    temporary = f"{package_zip}.tmp"
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for relative in modules:
            info = zipfile.ZipInfo(relative, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with open(os.path.join(_REPOSITORY, relative), "rb") as source:
                archive.writestr(info, source.read())
    os.replace(temporary, package_zip)
    shutil.copyfile(_MAIN_FILE, f"{main_file}.tmp")
    os.replace(f"{main_file}.tmp", main_file)
    with open(package_zip, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    return JobPackage(main_file=main_file, package_zip=package_zip, modules=tuple(modules), sha256=digest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m collection.job_package", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/collection-package", help="output folder")
    parser.add_argument("--config", default="", help="a Vertex configuration, to print the upload commands")
    args = parser.parse_args(argv)
    package = build(args.out)
    print(f"wrote {package.main_file}\nwrote {package.package_zip} ({len(package.modules)} modules, "
          f"sha256 {package.sha256[:16]})")
    if args.config:
        from pipeline.config import ConfigError, load_config  # pylint: disable=import-outside-toplevel
        try:
            config = load_config(args.config)
        except ConfigError as error:
            print(f"collection package: error: {error}", file=sys.stderr)
            return 2
        settings = config.vertex.collection if config.vertex else None
        if settings is None:
            print(f"collection package: error: {args.config} has no vertex.collection section, so there is "
                  f"nowhere to upload to; use configs/vertex.yaml", file=sys.stderr)
            return 2
        print("upload them where the pipeline's Dataproc batch reads them:\n"
              f"  gcloud storage cp {package.main_file} {settings.job_main_uri}\n"
              f"  gcloud storage cp {package.package_zip} {settings.job_package_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
