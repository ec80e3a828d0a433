"""The documentation site's sources are whole: every public name is in the
API reference (once), every example has a gallery page that shows its code,
its printed output and figures that exist, and every page is in the nav.
(`mkdocs build --strict`, run by .ci/run, checks links and rendering.)"""

from __future__ import annotations

import os
import re

import pytest

import fluxlike as fl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def read(*parts: str) -> str:
    with open(os.path.join(*parts), encoding="utf-8") as f:
        return f.read()


def reference() -> dict[str, list[str]]:
    """name -> the API pages that document it with a `::: fluxlike.name` directive."""
    found: dict[str, list[str]] = {}
    for page in sorted(os.listdir(os.path.join(DOCS, "api"))):
        for name in re.findall(r"^::: fluxlike\.(\w+)\s*$", read(DOCS, "api", page), re.M):
            found.setdefault(name, []).append(page)
    return found


def test_every_public_name_is_in_the_api_reference_once():
    found = reference()
    missing = sorted(set(fl.__all__) - set(found))
    assert not missing, f"public names missing from docs/api/*.md: {missing}"
    twice = {n: p for n, p in found.items() if len(p) > 1}
    assert not twice, f"documented on several pages: {twice}"
    unknown = sorted(set(found) - set(fl.__all__))
    assert not unknown, f"docs/api documents names that are not public: {unknown}"
    assert "::: fluxlike.losses" in read(DOCS, "api", "losses.md")  # the module: every loss with it


def nav() -> list[str]:
    return re.findall(r"^\s*-\s*(?:[^:\n]+:\s*)?([\w/]+\.md)\s*$", read(ROOT, "mkdocs.yml"), re.M)


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    pages = sorted(os.path.relpath(os.path.join(d, f), DOCS).replace(os.sep, "/")
                   for d, _, fs in os.walk(DOCS) for f in fs if f.endswith(".md"))
    listed = nav()
    assert sorted(set(pages) - set(listed)) == [], "pages not in mkdocs.yml's nav"
    assert sorted(set(listed) - set(pages)) == [], "nav entries with no page"


EXAMPLES = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "examples"))
                  if f.endswith(".py") and not f.startswith("_"))


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_has_a_gallery_page_with_its_code_output_and_figures(name):
    page = read(DOCS, "gallery", f"{name}.md")
    assert f'--8<-- "examples/{name}.py"' in page, "the page must include the script itself"
    assert f'--8<-- "docs/gallery/output/{name}.txt"' in page, "the page must include the printed output"
    output = read(DOCS, "gallery", "output", f"{name}.txt")
    assert output.strip(), f"docs/gallery/output/{name}.txt is empty: run python docs/gallery/build.py {name}"
    figures = re.findall(r"\]\((figures/[\w.-]+\.png)\)", page)
    assert figures, "the page shows no figure"
    for fig in figures:
        path = os.path.join(DOCS, "gallery", fig)
        assert os.path.getsize(path) > 5000, f"{fig} is missing or empty: run python docs/gallery/build.py {name}"
        assert fig.split("/")[-1].startswith(f"{name}-"), "an example's figures are named after it"
        assert f"wrote docs/gallery/{fig}" in output, f"{fig} was not written by the run shown on the page"
    assert f"]({name}.md)" in read(DOCS, "gallery", "index.md"), "the gallery index must link the page"
