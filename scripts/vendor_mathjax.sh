#!/usr/bin/env bash
# Vendor MathJax 3 into _vendor/mathjax/ so that book pages with math read offline.
#
# The book's _config.yml points Sphinx at it (sphinx.config.mathjax_path) and copies
# _vendor/ into the HTML root (html_extra_path); see FACTS.md "Book offline". Only the
# pieces the TeX+MathML -> CommonHTML combined component needs are kept:
#   tex-mml-chtml.js             the combined component (loader, TeX, MathML, CHTML, menu)
#   output/chtml/fonts/woff-v2/  the web fonts CHTML loads (fontURL [mathjax]/output/chtml/fonts/woff-v2)
#   input/tex/extensions/        TeX packages loaded on demand by \require and autoload
#                                (all-packages.js is left out: nothing loads it by default)
#   LICENSE                      Apache-2.0 asks for it to travel with the files
#
# Usage: scripts/vendor_mathjax.sh [VERSION]   (default: the newest 3.x; 4.x has another layout)
# Needs npm; run from anywhere. Rewrites _vendor/mathjax/ from scratch.
set -euo pipefail

version="${1:-3}"
case "$version" in
  3|3.*) ;;
  *) echo "vendor_mathjax.sh: MathJax $version is not 3.x; this script only knows the 3.x layout" >&2; exit 2 ;;
esac

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$repo_root/_vendor/mathjax"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# `npm pack` fetches the registry tarball without needing a package.json or node_modules.
(cd "$tmp" && npm pack --silent "mathjax@$version" >/dev/null)
tar -xzf "$tmp"/mathjax-*.tgz -C "$tmp"
src="$tmp/package/es5"
resolved="$(node -p "require('$tmp/package/package.json').version")"

for required in tex-mml-chtml.js output/chtml/fonts/woff-v2 input/tex/extensions; do
  if [ ! -e "$src/$required" ]; then
    echo "vendor_mathjax.sh: $required missing from mathjax@$resolved" >&2
    exit 1
  fi
done

rm -rf "$dest"
mkdir -p "$dest/output/chtml/fonts" "$dest/input/tex"
cp "$src/tex-mml-chtml.js" "$dest/"
cp -r "$src/output/chtml/fonts/woff-v2" "$dest/output/chtml/fonts/"
cp -r "$src/input/tex/extensions" "$dest/input/tex/"
rm -f "$dest/input/tex/extensions/all-packages.js"
cp "$tmp/package/LICENSE" "$dest/LICENSE"
echo "$resolved" > "$dest/VERSION"

echo "vendored mathjax@$resolved into ${dest#"$repo_root"/} ($(du -sh "$dest" | cut -f1))"
