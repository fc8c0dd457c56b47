#!/usr/bin/env python3
"""Copy the browser libraries installed by npm into static/vendor/.

No build step and no CDN: hospitals are often offline, so the pages load these
files from our own static folder. Run after `npm ci` (the set-up does both):

    npm ci && python scripts/vendor_static.py          # copy what changed
    python scripts/vendor_static.py --check            # exit 1 when out of date

Idempotent: a file whose bytes already match is left alone, so a second run copies
nothing. Files that no longer come from npm are not deleted (say so with --prune).
"""
from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class VendorSourceMissingError(ValueError):
    """A file that should come from node_modules is not there (npm ci not run?)."""


@dataclass(frozen=True)
class VendorItem:
    """One npm package's files to copy: paths relative to its package folder."""

    package: str
    target: str
    files: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()
    # Path inside the package folder that the copied paths are relative to.
    base: str = ""


VENDOR_ITEMS: tuple[VendorItem, ...] = (
    # OpenSeadragon 6: the UMD build (global `OpenSeadragon`) and its button images.
    VendorItem(
        package="openseadragon",
        target="openseadragon",
        base="build/openseadragon",
        files=("openseadragon.min.js", "openseadragon.min.js.map", "openseadragon.js"),
        folders=("images",),
    ),
    # Annotorious for OpenSeadragon 3: the UMD build (global `AnnotoriousOSD`, needs
    # the global `OpenSeadragon`), the ES build, and its stylesheet.
    VendorItem(
        package="@annotorious/openseadragon",
        target="annotorious-openseadragon",
        base="dist",
        files=(
            "annotorious-openseadragon.js",
            "annotorious-openseadragon.js.map",
            "annotorious-openseadragon.es.js",
            "annotorious-openseadragon.es.js.map",
            "annotorious-openseadragon.css",
        ),
    ),
    VendorItem(package="plotly.js-dist-min", target="plotly", files=("plotly.min.js",)),
)

LICENSE_NAMES = ("LICENSE", "LICENSE.txt", "LICENSE.md")


@dataclass
class VendorReport:
    copied: list[str]
    unchanged: list[str]
    pruned: list[str]
    versions: dict[str, dict[str, str]]


def _package_dir(*, node_modules: Path, package: str) -> Path:
    return node_modules.joinpath(*package.split("/"))


def _planned_copies(*, node_modules: Path, vendor_dir: Path) -> tuple[list[tuple[Path, Path]], dict[str, dict[str, str]]]:
    """List (source, destination) pairs and each package's installed version and licence."""
    pairs: list[tuple[Path, Path]] = []
    versions: dict[str, str] = {}
    licences: dict[str, str] = {}
    for item in VENDOR_ITEMS:
        package_dir = _package_dir(node_modules=node_modules, package=item.package)
        manifest = package_dir / "package.json"
        if not manifest.is_file():
            raise VendorSourceMissingError(
                f"{item.package} is not installed in {node_modules}: run `npm ci` in {node_modules.parent} first"
            )
        metadata = json.loads(manifest.read_text(encoding="utf-8"))
        versions[item.package] = metadata["version"]
        licences[item.package] = str(metadata.get("license", "see package"))
        base = package_dir / item.base if item.base else package_dir
        target = vendor_dir / item.target
        for name in item.files:
            source = base / name
            if not source.is_file():
                raise VendorSourceMissingError(f"{source} is missing from the installed {item.package}")
            pairs.append((source, target / name))
        for folder in item.folders:
            source_folder = base / folder
            if not source_folder.is_dir():
                raise VendorSourceMissingError(f"{source_folder} is missing from the installed {item.package}")
            for source in sorted(p for p in source_folder.rglob("*") if p.is_file()):
                pairs.append((source, target / folder / source.relative_to(source_folder)))
        # Licence files travel with the code we redistribute (annotorious ships none:
        # its SPDX id is in VERSIONS.json).
        for licence in LICENSE_NAMES:
            if (package_dir / licence).is_file():
                pairs.append((package_dir / licence, target / licence))
                break
    return pairs, {name: {"version": versions[name], "license": licences[name]} for name in versions}


def vendor_static_files(*, project_root: Path = PROJECT_ROOT, check_only: bool = False, prune: bool = False) -> VendorReport:
    """Copy npm build files to <project_root>/static/vendor/, skipping identical files.

    With check_only nothing is written; the report says what would be copied.
    """
    node_modules = project_root / "node_modules"
    vendor_dir = project_root / "static" / "vendor"
    pairs, versions = _planned_copies(node_modules=node_modules, vendor_dir=vendor_dir)
    copied: list[str] = []
    unchanged: list[str] = []
    for source, destination in pairs:
        relative = str(destination.relative_to(project_root))
        if destination.is_file() and filecmp.cmp(source, destination, shallow=False):
            unchanged.append(relative)
            continue
        copied.append(relative)
        if check_only:
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        # Write beside, then rename: a page served meanwhile never sees half a file.
        partial = destination.with_name(destination.name + ".partial")
        shutil.copyfile(source, partial)
        partial.replace(destination)

    versions_file = vendor_dir / "VERSIONS.json"
    versions_text = json.dumps(versions, indent=2, sort_keys=True) + "\n"
    if not versions_file.is_file() or versions_file.read_text(encoding="utf-8") != versions_text:
        copied.append(str(versions_file.relative_to(project_root)))
        if not check_only:
            vendor_dir.mkdir(parents=True, exist_ok=True)
            versions_file.write_text(versions_text, encoding="utf-8")

    pruned: list[str] = []
    if prune and vendor_dir.is_dir():
        wanted = {destination for _, destination in pairs} | {versions_file}
        managed = [vendor_dir / item.target for item in VENDOR_ITEMS]
        for folder in managed:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []:
                if path not in wanted:
                    pruned.append(str(path.relative_to(project_root)))
                    if not check_only:
                        path.unlink()
    return VendorReport(copied=copied, unchanged=unchanged, pruned=pruned, versions=versions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when static/vendor is out of date")
    parser.add_argument("--prune", action="store_true", help="delete files under the vendored folders that npm no longer provides")
    parser.add_argument("--project-root", type=Path, default=PROJECT_ROOT)
    args = parser.parse_args(argv)
    try:
        report = vendor_static_files(project_root=args.project_root, check_only=args.check, prune=args.prune)
    except VendorSourceMissingError as error:
        print(f"vendor_static: {error}", file=sys.stderr)
        return 2
    versions = ", ".join(f"{name} {info['version']}" for name, info in sorted(report.versions.items()))
    if args.check:
        if report.copied or report.pruned:
            print(f"vendor_static: out of date ({len(report.copied)} to copy, {len(report.pruned)} to prune): {versions}")
            return 1
        print(f"vendor_static: up to date ({len(report.unchanged)} files): {versions}")
        return 0
    print(f"vendor_static: copied {len(report.copied)}, unchanged {len(report.unchanged)}, pruned {len(report.pruned)}: {versions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
