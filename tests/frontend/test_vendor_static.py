"""scripts/vendor_static.py on a small synthetic node_modules (no npm needed)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "vendor_static.py"


@pytest.fixture(scope="module")
def vendor():
    spec = importlib.util.spec_from_file_location("vendor_static", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _fake_packages(root: Path, vendor) -> None:
    """Every file VENDOR_ITEMS asks for, with recognisable contents."""
    for item in vendor.VENDOR_ITEMS:
        package_dir = root / "node_modules" / item.package
        package_dir.mkdir(parents=True)
        (package_dir / "package.json").write_text(json.dumps({"version": "9.9.9", "license": "MIT"}))
        base = package_dir / item.base if item.base else package_dir
        for name in item.files:
            (base / name).parent.mkdir(parents=True, exist_ok=True)
            (base / name).write_text(f"{item.package}/{name}")
        for folder in item.folders:
            (base / folder / "sub").mkdir(parents=True)
            (base / folder / "a.png").write_bytes(b"\x89PNG a")
            (base / folder / "sub" / "b.png").write_bytes(b"\x89PNG b")
    (root / "node_modules" / "openseadragon" / "LICENSE.txt").write_text("BSD")


def test_copies_once_then_is_idempotent(tmp_path, vendor):
    _fake_packages(tmp_path, vendor)
    first = vendor.vendor_static_files(project_root=tmp_path)
    vendor_dir = tmp_path / "static" / "vendor"
    assert (vendor_dir / "openseadragon" / "openseadragon.min.js").read_text() == "openseadragon/openseadragon.min.js"
    assert (vendor_dir / "openseadragon" / "images" / "sub" / "b.png").read_bytes() == b"\x89PNG b"
    assert (vendor_dir / "openseadragon" / "LICENSE.txt").read_text() == "BSD"
    assert (vendor_dir / "annotorious-openseadragon" / "annotorious-openseadragon.css").is_file()
    assert (vendor_dir / "plotly" / "plotly.min.js").is_file()
    assert json.loads((vendor_dir / "VERSIONS.json").read_text())["plotly.js-dist-min"] == {"version": "9.9.9", "license": "MIT"}
    assert first.unchanged == []

    second = vendor.vendor_static_files(project_root=tmp_path)
    assert second.copied == []
    assert len(second.unchanged) == len(first.copied) - 1  # all but VERSIONS.json

    # A changed upstream file is copied again, and --check notices it first.
    (tmp_path / "node_modules" / "plotly.js-dist-min" / "plotly.min.js").write_text("new plotly")
    check = vendor.vendor_static_files(project_root=tmp_path, check_only=True)
    assert check.copied == ["static/vendor/plotly/plotly.min.js"]
    assert (vendor_dir / "plotly" / "plotly.min.js").read_text() != "new plotly"
    assert vendor.main(["--check", "--project-root", str(tmp_path)]) == 1
    assert vendor.main(["--project-root", str(tmp_path)]) == 0
    assert (vendor_dir / "plotly" / "plotly.min.js").read_text() == "new plotly"
    assert vendor.main(["--check", "--project-root", str(tmp_path)]) == 0


def test_prune_removes_stale_files_only_in_managed_folders(tmp_path, vendor):
    _fake_packages(tmp_path, vendor)
    vendor.vendor_static_files(project_root=tmp_path)
    stale = tmp_path / "static" / "vendor" / "plotly" / "old.js"
    stale.write_text("old")
    foreign = tmp_path / "static" / "vendor" / "other-lib.js"
    foreign.write_text("keep me")
    assert vendor.vendor_static_files(project_root=tmp_path).pruned == []
    assert stale.exists()
    report = vendor.vendor_static_files(project_root=tmp_path, prune=True)
    assert report.pruned == ["static/vendor/plotly/old.js"]
    assert not stale.exists() and foreign.exists()


def test_missing_package_is_a_clear_error(tmp_path, vendor, capsys):
    with pytest.raises(vendor.VendorSourceMissingError, match=r"openseadragon is not installed .*npm ci"):
        vendor.vendor_static_files(project_root=tmp_path)
    assert issubclass(vendor.VendorSourceMissingError, ValueError)
    assert vendor.main(["--project-root", str(tmp_path)]) == 2
    assert "npm ci" in capsys.readouterr().err
