"""The card's QR code and Code 128 barcode as inline SVG, big enough to scan at a till.

Both are drawn in module units with a `viewBox`, so CSS can scale them without blurring a bar.
"""

from __future__ import annotations

import barcode
import segno

QUIET_MODULES = 10  # Code 128 asks for at least ten modules of white on each side
BAR_HEIGHT = 60  # in modules: about a quarter of the width for a 16-digit number


def qr_svg(payload: str) -> str:
    """A QR code (error correction M, 4-module quiet zone) of exactly `payload`."""
    qr = segno.make(payload, error="m", micro=False)
    svg: str = qr.svg_inline(border=4, dark="#000", light="#fff", omitsize=True)
    return svg.replace(
        "<svg ", '<svg aria-hidden="true" focusable="false" shape-rendering="crispEdges" ', 1
    )


def code128_svg(number: str) -> str:
    """A Code 128 barcode of the card number (python-barcode's encoding), without text."""
    modules = "".join(barcode.get("code128", number).build())
    width = len(modules) + 2 * QUIET_MODULES
    bars = []
    x = 0
    while x < len(modules):
        if modules[x] == "1":
            run = len(modules[x:]) - len(modules[x:].lstrip("1"))
            bars.append(
                f'<rect x="{x + QUIET_MODULES}" y="0" width="{run}" height="{BAR_HEIGHT}"/>'
            )
            x += run
        else:
            x += 1
    return (
        f'<svg aria-hidden="true" focusable="false" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {BAR_HEIGHT}" shape-rendering="crispEdges">'
        f'<rect width="{width}" height="{BAR_HEIGHT}" fill="#fff"/>'
        f'<g fill="#000">{"".join(bars)}</g></svg>'
    )
