"""Build a function's deployable bundle: the same files Terraform zips and uploads.

Usage::

    python scripts/bundle.py FUNCTION OUT          # OUT: a directory (created, must be empty)
    python scripts/bundle.py FUNCTION OUT.zip      # or a zip file
    python scripts/bundle.py FUNCTION --list       # print the selection

What a bundle holds (the one description of it: ``terraform/functions.tf`` applies
the same rules with ``fileset()``/``regex()`` and ``tests/infra/test_bundle.py``
parses that file to check both agree):

- every file under ``functions/FUNCTION/``, at the bundle root, so the
  function's ``main.py`` is the bundle's ``main.py`` (the Cloud Functions Python
  runtime imports ``main.py`` from the root);
- the ``shared`` package, as ``shared/``, so ``import shared`` works with the
  bundle root as the only source directory;
- ``requirements.txt`` from the repository root, which the build installs;

minus every file whose path *inside the bundle* matches :data:`EXCLUDE_REGEX`:
anything under a hidden or ``__pycache__``/``test``/``tests`` folder, hidden
files, ``test_*.py``, ``*_test.py``, ``conftest.py`` and compiled files. Two
sources providing the same path is an error (Terraform's preconditions refuse
it too). The regex is matched with Python's ``re.search`` here and RE2's
``regex()`` in Terraform, so it must stay within their common syntax.

Standard library only: it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import re
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Must equal local.bundle_exclude_regex, local.bundle_shared_package and
# local.bundle_root_files in terraform/functions.tf.
EXCLUDE_REGEX = r"(^|/)([.][^/]*|__pycache__|tests?)(/|$)|(^|/)(test_[^/]*|[^/]*_test|conftest)[.]py$|[.]py[cod]$"
SHARED_PACKAGE = "shared"
ROOT_FILES = ("requirements.txt",)

_EXCLUDE = re.compile(EXCLUDE_REGEX)
_FUNCTION_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Fixed timestamp: the same sources give the same zip bytes.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class BundleError(Exception):
    """The bundle cannot be built; the message says why."""


def _files_under(folder: Path) -> list[str]:
    """Every file below ``folder`` as a /-separated relative path (Terraform's fileset(folder, "**"))."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def is_excluded(path_in_bundle: str) -> bool:
    return _EXCLUDE.search(path_in_bundle) is not None


def bundle_files(function: str, root: Path = ROOT) -> dict[str, Path]:
    """Path inside the bundle -> source file, for ``function``."""
    if not _FUNCTION_NAME.match(function):
        raise BundleError(f"{function!r} is not a function name (lowercase letters, digits, underscores)")
    function_dir = root / "functions" / function
    if not function_dir.is_dir():
        known = (
            sorted(p.name for p in (root / "functions").iterdir() if p.is_dir())
            if (root / "functions").is_dir()
            else []
        )
        raise BundleError(f"no folder functions/{function}/ (functions: {', '.join(known) or 'none'})")
    parts: list[dict[str, Path]] = [
        {f: function_dir / f for f in _files_under(function_dir)},
        {f"{SHARED_PACKAGE}/{f}": root / SHARED_PACKAGE / f for f in _files_under(root / SHARED_PACKAGE)},
        {f: root / f for f in ROOT_FILES},
    ]
    selected: dict[str, Path] = {}
    for part in parts:
        for inside, source in part.items():
            if is_excluded(inside):
                continue
            if inside in selected:
                raise BundleError(f"{inside} would come from both {selected[inside]} and {source}: rename one")
            selected[inside] = source
    for name in ROOT_FILES:
        if not (root / name).is_file():
            raise BundleError(f"{name} is missing at the repository root")
    if "main.py" not in selected:
        raise BundleError(f"functions/{function}/main.py is missing: the bundle would have no entry point")
    return dict(sorted(selected.items()))


def write_directory(files: dict[str, Path], out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"{out} exists and is not an empty directory")
    for inside, source in files.items():
        target = out / inside
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())


def write_zip(files: dict[str, Path], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for inside, source in files.items():
            info = zipfile.ZipInfo(inside, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, source.read_bytes())


def build(function: str, out: Path, root: Path = ROOT) -> dict[str, Path]:
    """Write the bundle of ``function`` to ``out`` (a directory, or a zip if it ends in .zip)."""
    files = bundle_files(function, root)
    if out.suffix == ".zip":
        write_zip(files, out)
    else:
        write_directory(files, out)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("function", help="folder name under functions/, e.g. sender")
    parser.add_argument("out", nargs="?", type=Path, help="output directory, or a path ending in .zip")
    parser.add_argument("--list", action="store_true", help="print the selected files instead of writing")
    args = parser.parse_args(argv)
    try:
        if args.list:
            for inside, source in bundle_files(args.function).items():
                print(f"{inside}\t{source.relative_to(ROOT)}")
            return 0
        if args.out is None:
            parser.error("give OUT (a directory or a .zip path) or --list")
        files = build(args.function, args.out)
    except BundleError as exc:
        print(f"bundle.py: {exc}", file=sys.stderr)
        return 1
    print(f"{args.function}: {len(files)} files -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
