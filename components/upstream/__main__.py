"""``python -m components.upstream``: the patches, what each replaces, why, and what would let
it go; ``--check``: the checked upstream sources that changed since (with their new digests);
``--digests``: every checked name with the digest of the installed source."""

import argparse
import sys
import textwrap
from typing import List, Optional

from components.upstream import PATCHES
from components.upstream.registry import changed_upstream, digest_of


def describe() -> str:
    """Every patch in words.

    :rtype: str
    """
    out = []
    for patch in PATCHES.values():
        out.append(patch.name)
        for label, text in (("replaces", ", ".join(patch.replaces) or "(reads only)"), ("why", patch.why),
                            ("upstream issue", patch.upstream_issue), ("goes when", patch.remove_when),
                            ("checked against", f"{len(patch.checked)} upstream sources")):
            if text:
                out.append(textwrap.fill(text, 100, initial_indent=f"  {label}: ", subsequent_indent="    "))
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.upstream", description=__doc__)
    parser.add_argument("--check", action="store_true", help="list the checked upstream sources that changed")
    parser.add_argument("--digests", action="store_true", help="print every checked name and its installed digest")
    args = parser.parse_args(argv)
    if args.digests:
        for patch in PATCHES.values():
            print(f"# {patch.name}")
            for name in patch.checked:
                print(f"{name} {digest_of(name)}")
        return 0
    if args.check:
        changed = 0
        for patch in PATCHES.values():
            for name in changed_upstream(patch):
                changed += 1
                print(f"{patch.name}: {name} changed (now {digest_of(name)})")
        print(f"{changed} checked upstream source(s) changed" if changed else
              f"all {len(PATCHES)} patches: the installed upstream is the one checked")
        return 1 if changed else 0
    print(describe())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
