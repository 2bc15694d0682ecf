"""Generate the API reference at build time: one page per module of the package, found by walking its tree.

Run by the mkdocs-gen-files plugin (see mkdocs.yml). Nothing here names a module: a module that is added, moved or
removed shows up in (or leaves) the reference on the next build, and the navigation follows the package's folders.
"""

from pathlib import Path

import mkdocs_gen_files

PACKAGE = "alpaca_lightning"
ROOT = Path(__file__).resolve().parent.parent
OUT = Path("reference")

nav = mkdocs_gen_files.Nav()

for path in sorted((ROOT / PACKAGE).rglob("*.py")):
    module = path.relative_to(ROOT).with_suffix("")
    parts = tuple(module.parts)
    if parts[-1] == "__main__" or any(part.startswith("_") and part != "__init__" for part in parts):
        continue
    if not all((ROOT.joinpath(*parts[:depth]) / "__init__.py").exists() for depth in range(1, len(parts))):
        continue  # inside a folder without __init__.py: not a regular package, which the docs loader cannot read
    if parts[-1] == "__init__":
        parts = parts[:-1]
        doc_path = Path(*parts) / "index.md"
    else:
        doc_path = Path(*parts).with_suffix(".md")
    nav[parts] = doc_path.as_posix()
    with mkdocs_gen_files.open(OUT / doc_path, "w") as page:
        page.write(f"# `{'.'.join(parts)}`\n\n::: {'.'.join(parts)}\n")
    mkdocs_gen_files.set_edit_path(OUT / doc_path, path.relative_to(ROOT))

with mkdocs_gen_files.open(OUT / "SUMMARY.md", "w") as summary:
    summary.writelines(nav.build_literate_nav())
