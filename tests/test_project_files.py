"""What a fresh clone shows a newcomer: docs that link only to files in the repository, packaging metadata that
setuptools accepts without deprecation warnings, and a README that says what setup.sh installs."""

from __future__ import annotations

import re
import sys

from tests.conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_docs_link_only_to_files_in_the_repository():
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = page.read_text()
        assert "shared/docs" not in text, (
            f"{page.name} points at ../shared/docs, which is not in the repository"
        )
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):  # markdown links to local files
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_license_is_an_spdx_expression_with_its_file():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0", "a TOML table is deprecated by setuptools"
    for name in project["license-files"]:
        assert "Apache License" in (REPO / name).read_text()


def test_readme_says_what_setup_installs():
    readme = (REPO / "README.md").read_text()
    assert "no CUDA package is pulled" not in readme
    assert (
        "nvidia-dali-cuda130" in readme and '"nvidia-dali-cuda130==' in (REPO / "pyproject.toml").read_text()
    )
