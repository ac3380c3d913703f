"""The architecture a run built, drawn as SVG from the Terraform resource addresses it created.

Nothing is placed by hand: each environment is a column, each module instance in it (``alb``,
``fleet["blue"]``, the root's own resources) a box listing its resource types with their counts, and
the arrows follow from the addresses. A module with a load balancer listener is where clients come in;
a target group keyed like a module instance (``aws_lb_target_group.this["blue"]`` and
``fleet["blue"]``) sends its traffic there. Boxes keyed ``blue`` or ``green`` take that colour.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass, field

#: ``module.NAME["key"]`` or ``module.NAME[0]``, one level of an address's module path.
_MODULE = re.compile(r'module\.(?P<name>[\w-]+)(?:\[(?:"(?P<key>[^"]*)"|(?P<index>\d+))\])?\.')
#: The resource at the end of an address: its type, name and key.
_RESOURCE = re.compile(
    r'^(?P<data>data\.)?(?P<type>[\w-]+)\.(?P<name>[\w-]+)(?:\[(?:"(?P<key>[^"]*)"|\d+)\])?$'
)

_COLOURS = {"blue": ("#dbe9fb", "#1f5fae"), "green": ("#dcf3df", "#23743a")}
_PLAIN = ("#f4f4f6", "#55555f")
_BOX_W, _LINE_H, _GAP, _PAD = 320, 17, 34, 14


@dataclass
class Box:
    """One module instance of an environment and the resource types it holds."""

    env: str
    path: str  # the module path, ``alb`` or ``environment › fleet["blue"]``; "(root)" for the root's own
    key: str | None
    types: Counter[str] = field(default_factory=Counter)
    keys_by_type: dict[str, set[str]] = field(default_factory=dict)

    @property
    def listens(self) -> bool:
        return "aws_lb_listener" in self.types

    def lines(self) -> list[str]:
        return [f"{t} ×{n}" if n > 1 else t for t, n in sorted(self.types.items())]


def boxes(built: dict[str, list[str]]) -> list[Box]:
    """The module instances of each environment, from its resource addresses (data sources left out)."""
    found: dict[tuple[str, str], Box] = {}
    for env, addresses in built.items():
        for address in addresses:
            modules = list(_MODULE.finditer(address))
            rest = address[modules[-1].end() :] if modules else address
            resource = _RESOURCE.match(rest)
            if resource is None or resource["data"]:
                continue
            labels = [m["name"] + (f'["{m["key"]}"]' if m["key"] is not None else "") for m in modules]
            path = " › ".join(labels) or "(root)"
            key = modules[-1]["key"] if modules else None
            box = found.setdefault((env, path), Box(env, path, key))
            box.types[resource["type"]] += 1
            if resource["key"]:
                box.keys_by_type.setdefault(resource["type"], set()).add(resource["key"])
    return list(found.values())


def edges(all_boxes: list[Box]) -> list[tuple[Box, Box]]:
    """Traffic: from a box with target groups to the box of the same environment keyed like one of them."""
    found = []
    for source in all_boxes:
        for key in sorted(source.keys_by_type.get("aws_lb_target_group", set())):
            found += [
                (source, b) for b in all_boxes if b.env == source.env and b.key == key and b is not source
            ]
    return found


def architecture_svg(built: dict[str, list[str]], *, title: str) -> str:
    """An SVG of what ``built`` (environment -> resource addresses) holds; empty string when nothing."""
    all_boxes = boxes(built)
    if not all_boxes:
        return ""
    targets = {id(t) for _, t in edges(all_boxes)}

    def rank(box: Box) -> tuple[int, str]:  # where clients enter first, then what they reach, then the rest
        return (0 if box.listens else 1 if id(box) in targets else 2, box.path)

    envs = list(dict.fromkeys(b.env for b in all_boxes))
    place: dict[int, tuple[float, float, float]] = {}  # id(box) -> x, y, height
    columns: list[tuple[str, float, float]] = []  # env, x, height
    x: float = _GAP
    top = 70.0
    for env in envs:
        column = sorted((b for b in all_boxes if b.env == env), key=rank)
        # Boxes of one rank side by side when they are the targets of the same traffic (blue beside green).
        rows: list[list[Box]] = []
        for box in column:
            if rows and rank(rows[-1][0])[0] == rank(box)[0] == 1:
                rows[-1].append(box)
            else:
                rows.append([box])
        width: float = max(len(r) for r in rows) * (_BOX_W + _GAP) - _GAP
        y = top + 40
        for row in rows:
            height: float = max(_PAD * 2 + _LINE_H * (1 + len(b.lines())) for b in row)
            for i, box in enumerate(row):
                place[id(box)] = (x + _PAD + i * (_BOX_W + _GAP), y, height)
            y += height + _GAP
        columns.append((env, x, y - top))
        x += width + 2 * _PAD + _GAP
    total_w = x
    total_h = max(h for _, _, h in columns) + top + _GAP
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {total_w:.0f} {total_h:.0f}" '
        f'width="{total_w:.0f}" height="{total_h:.0f}" role="img" aria-labelledby="arch-title" '
        'font-family="system-ui, sans-serif" font-size="12">',
        f'<title id="arch-title">{html.escape(title, quote=False)}</title>',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#444"/></marker></defs>',
        f'<rect width="{total_w:.0f}" height="{total_h:.0f}" fill="#ffffff"/>',
    ]
    for env, cx, height in columns:
        width = max(place[id(b)][0] for b in all_boxes if b.env == env) + _BOX_W + _PAD - cx
        out.append(
            f'<rect x="{cx:.0f}" y="{top:.0f}" width="{width:.0f}" height="{height:.0f}" rx="10" '
            'fill="none" stroke="#888" stroke-dasharray="6 4"/>'
            f'<text x="{cx + 12:.0f}" y="{top + 24:.0f}" font-size="16" font-weight="bold" fill="#222">'
            f"{html.escape(env, quote=False)}</text>"
        )
    for box in all_boxes:
        bx, by, height = place[id(box)]
        fill, stroke = _COLOURS.get(box.key or "", _PLAIN)
        out.append(
            f'<rect x="{bx:.0f}" y="{by:.0f}" width="{_BOX_W}" height="{height:.0f}" rx="6" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1.5"/>'
            f'<text x="{bx + 10:.0f}" y="{by + _PAD + 12:.0f}" font-weight="bold" fill="{stroke}">'
            f"{html.escape(box.path, quote=False)}</text>"
        )
        for i, line in enumerate(box.lines()):
            out.append(
                f'<text x="{bx + 10:.0f}" y="{by + _PAD + 12 + _LINE_H * (i + 1):.0f}" fill="#222">'
                f"{html.escape(line, quote=False)}</text>"
            )
        if box.listens:
            out.append(
                f'<text x="{bx + _BOX_W / 2:.0f}" y="{top - 38:.0f}" text-anchor="middle" fill="#222">'
                "clients (HTTP)</text>"
                f'<line x1="{bx + _BOX_W / 2:.0f}" y1="{top - 30:.0f}" '
                f'x2="{bx + _BOX_W / 2:.0f}" y2="{by:.0f}" '
                'stroke="#444" stroke-width="1.5" marker-end="url(#arrow)"/>'
            )
    for source, target in edges(all_boxes):
        sx, sy, sh = place[id(source)]
        tx, ty, _ = place[id(target)]
        stroke = _COLOURS.get(target.key or "", _PLAIN)[1]
        out.append(
            f'<line x1="{sx + _BOX_W / 2:.0f}" y1="{sy + sh:.0f}" x2="{tx + _BOX_W / 2:.0f}" y2="{ty:.0f}" '
            f'stroke="{stroke}" stroke-width="2" marker-end="url(#arrow)"/>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"
